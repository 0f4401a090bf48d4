package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

func newCmdAuditSinks(f *Factory, so *StepUpOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "sinks",
		Short: "Show each audit sink's cursor, lag and last error",
		Long: `Show where each audit sink (audit.sinks) and the anchor (audit.anchor) stand:
the last event and signed head they acknowledged (the cursor kept in the
store), how many events they still lack, and the last delivery error.

From a running server (a session with audit:read, or the admin socket) the
error and delivery times are live; from a stopped data dir only the stored
cursors are shown. A stored cursor that cannot be trusted (past the end of
the trail, or without this deployment's authenticator) is shown as 0 with
why: the sink then starts again at the first retained event.`,
		Example: `  pamctl audit sinks
  pamctl audit sinks -o json | jq '.[] | select(.lag > 1000)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			src, err := f.openAudit(cmd, so)
			if err != nil {
				return err
			}
			defer src.Close()
			sinks, err := src.Sinks(cmd.Context())
			if err != nil {
				return err
			}
			if sinks == nil {
				sinks = []auditsink.Status{}
			}
			ios := f.IO
			if output == "json" {
				return ios.JSON(sinks)
			}
			if len(sinks) == 0 {
				ios.Notef("No audit sinks are configured: add audit.sinks (and audit.anchor) to the config, see docs/audit.md")
				return nil
			}
			t := ios.NewTable("NAME", "TYPE", "CURSOR", "HEAD", "LAG", "LAST DELIVERY", "LAST ERROR")
			for _, s := range sinks {
				typ := s.Type
				if s.Anchor {
					typ += " (anchor)"
				}
				if s.Standby {
					typ += " (standby: another replica delivers)"
				}
				delivered, lastErr := "-", dash(s.LastError)
				if !s.LastDeliveryAt.IsZero() {
					delivered = s.LastDeliveryAt.Local().Format(time.DateTime)
				} else if !s.Running && !s.Cursor.Updated.IsZero() {
					delivered = s.Cursor.Updated.Local().Format(time.DateTime)
				}
				if !s.Running {
					lastErr = "(server not running)"
				}
				if s.CursorError != "" {
					lastErr = "cursor not trusted: " + s.CursorError
				} else if s.RecentStandIns >= auditsink.StandInAlarm {
					lastErr = fmt.Sprintf("%d of the last %d events went as stand-ins: the SIEM gets little event content", s.RecentStandIns, auditsink.StandInWindow)
				}
				t.Row(s.Name, typ, strconv.FormatUint(s.Cursor.Seq, 10), strconv.FormatUint(s.Cursor.HeadSeq, 10),
					strconv.FormatUint(s.Lag, 10), delivered, truncate(lastErr, 80))
			}
			return t.Render()
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// anchorCheck is what `audit verify --anchors` adds to the output.
type anchorCheck struct {
	File string `json:"file"`
	auditsink.AnchorReport
}

// readAnchorFile reads and signature-checks the heads of an anchor file.
func readAnchorFile(cmd *cobra.Command, f *Factory, path, jwksFile string) ([]audit.SignedHead, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("--anchors: %w", err))
	}
	defer fh.Close()
	keys, _, err := verificationKeys(cmd, f, jwksFile)
	if err != nil {
		return nil, err
	}
	heads, err := auditsink.ReadAnchors(fh, keys)
	if err != nil {
		return nil, withCode(ExitError, fmt.Errorf("--anchors %s: %w", path, err))
	}
	return heads, nil
}

// checkAnchors compares the verified local trail with the anchored heads
// and records a mismatch in res as a chain break.
func checkAnchors(cmd *cobra.Command, src auditSource, res *api.VerifyResult, heads []audit.SignedHead, path string) (*anchorCheck, error) {
	rep := res.Report
	st := audit.Status{First: rep.First, Last: audit.Link{Seq: rep.Last, Hash: rep.LastHash}, Anchor: rep.Anchor}
	ar, err := auditsink.CheckAnchors(heads, st, func(fn func(uint64, string) bool) error {
		return src.Hashes(cmd.Context(), fn)
	})
	ac := &anchorCheck{File: path, AnchorReport: ar}
	var be *audit.BreakError
	if errors.As(err, &be) {
		res.OK, res.Break, res.Error = false, be, be.Error()
		return ac, nil
	}
	return ac, err
}

// explainAnchors rewrites what a successful check proved once the trail
// also matched the heads anchored off-host.
func explainAnchors(ac *anchorCheck, proven, notProven []string) ([]string, []string) {
	line := fmt.Sprintf("the trail agrees with %d signed heads anchored off-host in %s, the last at seq %d: nothing up to seq %d was rewritten, cut or rolled back since it was anchored, even by someone holding the master key and the data file",
		ac.Matched, ac.File, ac.Last, ac.Last)
	if ac.Pruned > 0 {
		line += fmt.Sprintf(" (%d anchored heads predate the retained trail and were not compared)", ac.Pruned)
	}
	proven = append(proven, line)
	kept := notProven[:0]
	for _, n := range notProven {
		if !strings.HasPrefix(n, "that pamctl.db was not rolled back") {
			kept = append(kept, n)
		}
	}
	kept = append(kept, fmt.Sprintf("events after seq %d, the last anchored head: they are not anchored yet", ac.Last))
	return proven, kept
}
