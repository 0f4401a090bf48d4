package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
	"github.com/pamctl/pamctl/store"

	"github.com/pamctl/pamctl/broker/safefile"
)

// auditSource is where audit commands read from: the broker API (with a
// session, or the admin socket) or the data dir opened directly.
type auditSource interface {
	Events(ctx context.Context, f audit.Filter, n int) ([]audit.Event, error)
	Event(ctx context.Context, seq uint64) (audit.Event, error)
	Follow(ctx context.Context, f audit.Filter, from uint64, fn func(audit.Event) error) error
	Verify(ctx context.Context) (api.VerifyResult, error)
	Export(ctx context.Context, w io.Writer, since, until time.Time) error
	// Sinks reports each audit sink's cursor and lag (and, from a running
	// server, its last error).
	Sinks(ctx context.Context) ([]auditsink.Status, error)
	// Hashes calls fn with the seq and hash of every retained event in
	// order, until fn returns false.
	Hashes(ctx context.Context, fn func(seq uint64, hash string) bool) error
	Close() error
}

// remoteAudit reads through the broker API. retry, when set (a session),
// runs each call again after a step-up login (see Factory.withStepUp): the
// broker refuses before sending any event, so nothing is read twice.
type remoteAudit struct {
	c     *api.Client
	retry func(call func() error) error
}

func (r remoteAudit) do(call func() error) error {
	if r.retry == nil {
		return call()
	}
	return r.retry(call)
}

func (r remoteAudit) Events(ctx context.Context, f audit.Filter, n int) (evs []audit.Event, err error) {
	return evs, r.do(func() (err error) { evs, err = r.c.AuditEvents(ctx, f, n); return err })
}
func (r remoteAudit) Event(ctx context.Context, seq uint64) (e audit.Event, err error) {
	return e, r.do(func() (err error) { e, err = r.c.AuditEvent(ctx, seq); return err })
}
func (r remoteAudit) Follow(ctx context.Context, f audit.Filter, from uint64, fn func(audit.Event) error) error {
	return r.do(func() error { return r.c.AuditFollow(ctx, f, from, fn) })
}
func (r remoteAudit) Verify(ctx context.Context) (res api.VerifyResult, err error) {
	err = r.do(func() (err error) { res, err = r.c.AuditVerify(ctx); return err })
	if res.Report.Keys == "" {
		res.Report.Keys = audit.KeysDeployment // the server checks against its keyring
	}
	return res, err
}
func (r remoteAudit) Export(ctx context.Context, w io.Writer, since, until time.Time) error {
	return r.do(func() error { return r.c.AuditExport(ctx, w, since, until) })
}
func (r remoteAudit) Sinks(ctx context.Context) (st []auditsink.Status, err error) {
	return st, r.do(func() (err error) { st, err = r.c.AuditSinks(ctx); return err })
}

// Hashes streams the server's export: one request (one audit.export
// event) however many heads are checked.
func (r remoteAudit) Hashes(ctx context.Context, fn func(uint64, string) bool) error {
	return r.do(func() error {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { pw.CloseWithError(r.c.AuditExport(ctx, pw, time.Time{}, time.Time{})) }()
		defer pr.Close()
		return eventHashes(pr, fn)
	})
}

func (r remoteAudit) Close() error { return nil }

// eventHashes reads the event lines of an export.
func eventHashes(r io.Reader, fn func(uint64, string) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), audit.MaxLineBytes+1)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"seq":`)) {
			continue
		}
		var e struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("read the trail: %w", err)
		}
		if !fn(e.Seq, e.Hash) {
			return nil
		}
	}
	return sc.Err()
}

// localAudit reads the trail directly, no server running: the data dir,
// or with store.backend etcd the cluster (openEtcdAudit). Its log
// inspects: it writes nothing and signs no head.
type localAudit struct {
	log   auditLog
	keys  *token.Keyring
	cfg   *Config
	vault *vault.Vault
	// cursors holds the sinks' stored cursors (the store).
	cursors interface {
		SinkCursors(ctx context.Context) (map[string]auditsink.Cursor, error)
	}
	closeStore func() error
	// reported is what opening the trail found beside the bucket (a
	// damaged segment, events a crash left there, a replaced database) or
	// past the last signed head (events without a valid authenticator):
	// these fail verify.
	reported []error
}

// missing refuses to read a trail that acknowledged events a crash left
// in the segment are missing from: they would be left out without a word
// (a damaged segment does not stop reading: the bucket's trail is what
// there is to see, and verify says what is wrong).
func (la *localAudit) missing() error {
	for _, err := range la.reported {
		if errors.Is(err, store.ErrSegmentPending) {
			return withCode(ExitError, err)
		}
	}
	return nil
}

func (la *localAudit) Events(ctx context.Context, f audit.Filter, n int) ([]audit.Event, error) {
	if err := la.missing(); err != nil {
		return nil, err
	}
	var out []audit.Event
	err := la.log.Range(ctx, 0, func(e audit.Event) bool {
		if f.Match(e) {
			out = append(out, e)
			if len(out) > n {
				out = out[1:]
			}
		}
		return true
	})
	return out, err
}
func (la *localAudit) Event(ctx context.Context, seq uint64) (audit.Event, error) {
	if err := la.missing(); err != nil {
		return audit.Event{}, err
	}
	return la.log.Get(ctx, seq)
}
func (la *localAudit) Follow(context.Context, audit.Filter, uint64, func(audit.Event) error) error {
	return withCode(ExitUsage, errors.New("audit tail -f follows a running server: start `pamctl serve` (or pass --server)"))
}
func (la *localAudit) Verify(ctx context.Context) (api.VerifyResult, error) {
	rep, err := la.log.Verify(ctx, audit.KeyFunc(la.keys.AnyPublicKey))
	rep.Keys = audit.KeysDeployment
	res := api.VerifyResult{OK: err == nil, Report: rep}
	var be *audit.BreakError
	if errors.As(err, &be) {
		res.Break, res.Error = be, be.Error()
		if len(la.reported) > 0 {
			res.Error += "; and " + errors.Join(la.reported...).Error()
		}
		return res, nil
	}
	if err == nil && len(la.reported) > 0 {
		res.OK, res.Error = false, "the trail in the database verifies, but not all of it is there: "+errors.Join(la.reported...).Error()
	}
	return res, err
}
func (la *localAudit) Export(ctx context.Context, w io.Writer, since, until time.Time) error {
	if err := la.missing(); err != nil {
		return err
	}
	return la.log.ExportRange(ctx, w, since, until)
}

// Sinks reads the stored cursors of the configured sinks: with no server
// running there is no last error to show.
func (la *localAudit) Sinks(ctx context.Context) ([]auditsink.Status, error) {
	key, err := la.vault.DerivedKey(auditsink.CursorKeyPurpose)
	if err != nil {
		return nil, err
	}
	return storedSinkStatus(ctx, la.cursors, la.log, la.cfg, key, la.keys.RecordsSealed())
}

func (la *localAudit) Hashes(ctx context.Context, fn func(uint64, string) bool) error {
	return la.log.Range(ctx, 0, func(e audit.Event) bool { return fn(e.Seq, e.Hash) })
}

// storedSinkStatus is the status of every configured sink as the data dir
// records it, each stored cursor checked as a starting server would
// (auditsink.TrustCursor): one it would not trust shows as the zero
// cursor, with why in CursorError. legacyEnded is what serve would pass
// as auditsink.Options.LegacyCursorsEnded: the store's records are
// sealed, so a cursor without an authenticator is no older pamctl's.
func storedSinkStatus(ctx context.Context, db interface {
	SinkCursors(ctx context.Context) (map[string]auditsink.Cursor, error)
}, lg audit.Log, cfg *Config, key []byte, legacyEnded bool) ([]auditsink.Status, error) {
	cursors, err := db.SinkCursors(ctx)
	if err != nil {
		return nil, err
	}
	if cursors == nil {
		cursors = map[string]auditsink.Cursor{}
	}
	// As a starting server does: a sink renamed when its path token was
	// hidden keeps the cursor stored under its old name.
	auditsink.AdoptRenamedCursors(key, cursors, cfg.Audit.Sinks, cfg.Audit.Anchor)
	st, err := lg.Head(ctx)
	if err != nil {
		return nil, err
	}
	out := []auditsink.Status{}
	legacyOK := !legacyEnded && auditsink.LegacyCursorsOK(cursors)
	check := func(s auditsink.Status) auditsink.Status {
		stored, found := cursors[s.Name]
		cur, c := auditsink.TrustCursor(key, s.Name, stored, found, st, legacyOK)
		s.Cursor, s.Last, s.Lag = cur, st.Last.Seq, auditsink.Lag(cur, st.Last.Seq, s.Anchor)
		if c.Rejected {
			s.CursorError = c.Problem
		} else {
			s.CursorNote = c.Problem
		}
		return s
	}
	for _, c := range cfg.Audit.Sinks {
		out = append(out, check(auditsink.Status{Name: c.ID(), Type: c.Type, Destination: c.Destination()}))
	}
	if a := cfg.Audit.Anchor; a.Enabled() {
		typ, dest := a.Destination()
		out = append(out, check(auditsink.Status{Name: a.Name(), Type: typ, Destination: dest, Anchor: true}))
	}
	return out, nil
}

func (la *localAudit) Close() error {
	return errors.Join(la.log.Close(), la.closeStore())
}

// openAudit picks the source: a logged-in session, else the admin socket,
// else the data dir (with store.backend etcd, the cluster).
func (f *Factory) openAudit(cmd *cobra.Command, so *StepUpOptions) (auditSource, error) {
	if err := refuseUnderExec("read the audit trail"); err != nil {
		return nil, err
	}
	cfg, err := f.Config(cmd)
	if err != nil {
		return nil, err
	}
	// --data-dir on the command line names the deployment to read: its
	// server's admin socket, or the files; never whatever broker the
	// session points at (checking a restored or damaged dir must not
	// report another deployment's trail).
	explicitDir := cmd.Flags().Changed("data-dir") && !cmd.Flags().Changed("server")
	if !explicitDir {
		if c, _, err := f.BrokerClient(cfg); err == nil {
			return remoteAudit{c: c, retry: func(call func() error) error { return f.withStepUp(cmd, cfg, c, so, call) }}, nil
		}
	}
	if c := f.AdminClient(cfg); c != nil {
		return remoteAudit{c: c}, nil
	}
	if cfg.Store.Backend == BackendEtcd {
		return openEtcdAudit(cmd.Context(), cfg)
	}
	l, err := openLocal(cmd.Context(), cfg)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, withCode(ExitUnauthenticated, errors.New("a server holds the data dir and you are not logged in: run `pamctl login`"))
		}
		return nil, err
	}
	kr, err := l.keyring(cmd.Context())
	if err != nil {
		l.Close()
		return nil, err
	}
	// Inspect: a trail cut below its high-water mark still opens here, so
	// verify can say what is missing (the server refuses to start on it).
	la := &localAudit{keys: kr, cfg: cfg, vault: l.vault, cursors: l.db, closeStore: l.Close}
	key, err := l.vault.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		l.Close()
		return nil, err
	}
	lg, err := l.db.AuditLog(store.AuditOptions{Signer: kr, Inspect: true, RecordKey: key, OnError: func(err error) { la.reported = append(la.reported, err) }})
	if err != nil {
		l.Close()
		return nil, err
	}
	la.log = lg
	return la, nil
}

// NewCmdAudit builds `pamctl audit`.
func NewCmdAudit(f *Factory) *cobra.Command {
	so := &StepUpOptions{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read, follow, verify and export the audit trail",
		Long: `The audit trail records every login, request, review, token, revocation,
vault change and proxied call as one hash-chained event. Reading it needs the
audit:read scope (or the admin socket, or the data dir when no server runs),
and every read is itself audited.`,
	}
	cmd.PersistentFlags().String("master-key-file", "", "master key file, when reading the data dir directly")
	// Reading the trail with a session needs a recent login (step-up).
	addStepUpFlags(cmd, so, true)
	cmd.AddCommand(newCmdAuditTail(f, so), newCmdAuditShow(f, so), newCmdAuditVerify(f, so), newCmdAuditExport(f, so))
	cmd.AddCommand(newCmdAuditSinks(f, so))
	return cmd
}

// AuditTailOptions are the inputs of `pamctl audit tail`.
type AuditTailOptions struct {
	N      int
	Follow bool
	Types  []string
	Actor  string
	Issuer string
	Grant  string
	Since  time.Duration
	Output string
}

func (o *AuditTailOptions) filter(now time.Time) audit.Filter {
	f := audit.Filter{Actor: o.Actor, Issuer: o.Issuer, Grant: o.Grant}
	for _, t := range o.Types {
		f.Types = append(f.Types, audit.Type(t))
	}
	if o.Since > 0 {
		f.Since = now.Add(-o.Since)
	}
	return f
}

func newCmdAuditTail(f *Factory, so *StepUpOptions) *cobra.Command {
	o := &AuditTailOptions{}
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the latest events (-f to follow)",
		Example: `  pamctl audit tail -n 20 --type proxy.call
  pamctl audit tail -f --actor alice
  pamctl audit tail --since 1h -o json | jq .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if o.N <= 0 || o.N > api.MaxEvents {
				return withCode(ExitUsage, fmt.Errorf("-n must be between 1 and %d", api.MaxEvents))
			}
			src, err := f.openAudit(cmd, so)
			if err != nil {
				return err
			}
			defer src.Close()
			flt := o.filter(f.Now())
			p := newEventPrinter(f, o.Output == "json" || !f.IO.IsStdoutTTY())
			print := matching(flt, p.print)
			evs, err := src.Events(cmd.Context(), flt, o.N)
			if err != nil {
				return err
			}
			var from uint64 // 0: the server starts at its head
			for _, e := range evs {
				if err := print(e); err != nil {
					return err
				}
				from = e.Seq + 1
			}
			if !o.Follow {
				return nil
			}
			err = src.Follow(cmd.Context(), flt, from, print)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().IntVarP(&o.N, "lines", "n", 50, "number of events")
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "keep printing new events as they happen")
	cmd.Flags().StringSliceVar(&o.Types, "type", nil, "only these event types (e.g. proxy.call, request.*)")
	cmd.Flags().StringVar(&o.Actor, "actor", "", "only events by this subject or email (under any issuer; see --issuer)")
	cmd.Flags().StringVar(&o.Issuer, "issuer", "", "only events by identities of this issuer (its configured name): with --actor, one person")
	cmd.Flags().StringVar(&o.Grant, "grant", "", "only events of this grant")
	cmd.Flags().Var(durationFlag{&o.Since}, "since", "only events newer than this (e.g. 1h, 7d)")
	addOutputFlag(cmd, &o.Output)
	return cmd
}

// matching calls print for the events f matches only: the broker filters
// too, but one too old to know a field (issuer) would send every event.
func matching(f audit.Filter, print func(audit.Event) error) func(audit.Event) error {
	return func(e audit.Event) error {
		if !f.Match(e) {
			return nil
		}
		return print(e)
	}
}

// eventPrinter prints events as a styled line each on a terminal, or as
// JSON Lines.
type eventPrinter struct {
	f      *Factory
	json   bool
	header bool
}

func newEventPrinter(f *Factory, jsonLines bool) *eventPrinter {
	return &eventPrinter{f: f, json: jsonLines}
}

func (p *eventPrinter) print(e audit.Event) error {
	ios := p.f.IO
	if p.json {
		return ios.JSONLine(e)
	}
	st := ios.Styles()
	if !p.header {
		p.header = true
		fmt.Fprintln(ios.Out, st.Header.Render(fmt.Sprintf("%-6s %-19s %-18s %-24s %-14s %-10s %-6s %s", "SEQ", "TIME", "TYPE", "ACTOR", "MODEL", "DECISION", "STATUS", "LATENCY")))
	}
	// Every field of an event may carry text from a user, a model or an
	// upstream: escape each before padding (truncate first, so an escape
	// sequence is never cut in half).
	esc := iostreams.Escape
	actor := "-"
	if e.Actor != nil {
		actor = actorLabel(e.Actor)
	}
	status, latency := "-", "-"
	if e.Status != 0 {
		status = strconv.Itoa(e.Status)
	}
	if e.Type == audit.TypeProxyCall {
		latency = fmt.Sprintf("%dms", e.LatencyMS)
	}
	dec := esc(truncate(dash(e.Decision), 10))
	switch e.Decision {
	case "deny", "denied", "revoked", "expired":
		dec = st.Error.Render(fmt.Sprintf("%-10s", dec))
	case "allow", "approved":
		dec = st.Success.Render(fmt.Sprintf("%-10s", dec))
	default:
		dec = fmt.Sprintf("%-10s", dec)
	}
	_, err := fmt.Fprintf(ios.Out, "%-6d %-19s %-18s %-24s %-14s %s %-6s %s\n", e.Seq, e.Time.Local().Format("2006-01-02 15:04:05"), esc(string(e.Type)), esc(truncate(actor, 24)), esc(truncate(dash(e.Model), 14)), dec, status, latency)
	return err
}

func newCmdAuditShow(f *Factory, so *StepUpOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show SEQ|GRANT_ID",
		Short: "Show one event, or one grant's whole session as a timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			src, err := f.openAudit(cmd, so)
			if err != nil {
				return err
			}
			defer src.Close()
			ctx := cmd.Context()
			var evs []audit.Event
			if seq, err := strconv.ParseUint(args[0], 10, 64); err == nil {
				e, err := src.Event(ctx, seq)
				if err != nil {
					return err
				}
				evs = []audit.Event{e}
			} else {
				byGrant, err := src.Events(ctx, audit.Filter{Grant: args[0]}, api.MaxEvents)
				if err != nil {
					return err
				}
				byReq, err := src.Events(ctx, audit.Filter{Request: args[0]}, api.MaxEvents)
				if err != nil {
					return err
				}
				seen := map[uint64]bool{}
				for _, e := range append(byGrant, byReq...) {
					if !seen[e.Seq] {
						seen[e.Seq] = true
						evs = append(evs, e)
					}
				}
				sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
				if len(evs) == 0 {
					return withCode(ExitNotFound, fmt.Errorf("no audit events for %s", args[0]))
				}
			}
			if output == "json" {
				return f.IO.JSON(evs)
			}
			return printTimeline(f, evs)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func printTimeline(f *Factory, evs []audit.Event) error {
	ios := f.IO
	st := ios.Styles()
	w := ios.Out
	for _, e := range evs {
		actor := "pamctl"
		if e.Actor != nil {
			actor = actorLabel(e.Actor)
		}
		fmt.Fprintf(w, "%s  %s  %s  %s\n", st.Muted.Render(fmt.Sprintf("#%d", e.Seq)), e.Time.Local().Format("2006-01-02 15:04:05.000"), st.Bold.Render(string(e.Type)), iostreams.Escape(actor))
		d := ios.NewDetails("    ", 10) // escapes every value
		field := d.Field
		field("decision", strings.TrimSpace(e.Decision+" "+strings.Join(e.Reasons, ", ")))
		field("target", e.Target)
		field("model", e.Model)
		field("endpoint", e.Endpoint)
		if e.Status != 0 {
			field("status", fmt.Sprintf("%d in %dms", e.Status, e.LatencyMS))
		}
		if e.Usage != nil {
			field("usage", fmt.Sprintf("%d in, %d out, %d total tokens", e.Usage.InputTokens, e.Usage.OutputTokens, e.Usage.TotalTokens))
		}
		d.FieldLines("prompt", promptLines(e.Prompt, maxShownText))
		field("sha256", e.PromptSHA256)
		field("response", truncate(e.Response, maxShownText))
		if len(e.Masked) > 0 {
			var parts []string
			for k, v := range e.Masked {
				parts = append(parts, fmt.Sprintf("%s×%d", k, v))
			}
			sort.Strings(parts)
			field("masked", strings.Join(parts, " "))
		}
		field("error", e.Error)
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field(k, e.Details[k])
		}
		if err := d.Render(); err != nil {
			return err
		}
	}
	return nil
}

// maxShownText is how much of a prompt or response audit show prints, in
// runes once escaped (what a person reads; text made of hidden characters
// takes ten a character), as the web page cuts a value.
const maxShownText = 2000

// A held call's excerpt (audit.HeldExcerpt) has lines of its own naming
// where in the call the text under them is, "[found in messages[1]
// (user)]", after a count line, "[prompt of N bytes; rule …]", when the
// rule matched more than once.
var (
	placeLine = regexp.MustCompile(`^\[found in .+\]$`)
	countLine = regexp.MustCompile(`^\[prompt of [0-9]+ bytes; .+\]$`)
)

// promptLines is how audit show prints a prompt: the excerpt's place and
// count lines as they are, each line of the text under them indented two
// spaces more, so no text can pass for a place (a line right after a place
// line is text: every place has text under it); about n runes of text in
// all, counted after escaping (a line break as two), "…" where it is cut.
func promptLines(p string, n int) []string {
	if p == "" {
		return nil
	}
	var out []string
	afterPlace, left := false, n
	for i, l := range strings.Split(p, "\n") {
		if !afterPlace && placeLine.MatchString(l) || i == 0 && countLine.MatchString(l) {
			out = append(out, safetext.Clip(l, n, false))
			afterPlace = placeLine.MatchString(l)
			continue
		}
		afterPlace = false
		if left <= 0 {
			out[len(out)-1] += "…"
			break
		}
		c := safetext.Clip(l, left, false)
		out = append(out, "  "+c)
		left -= utf8.RuneCountInString(safetext.Escape(c)) + 2
		if c != l {
			break
		}
	}
	return out
}

// verifyOutput is what `audit verify -o json` prints: the result plus
// what the check proved and what it could not.
type verifyOutput struct {
	api.VerifyResult
	Proven    []string `json:"proven"`
	NotProven []string `json:"not_proven"`
	// Anchors is the comparison with the off-host heads (--anchors).
	Anchors *anchorCheck `json:"anchors,omitempty"`
}

// explain lists, in words, what a successful check proved and what it could
// not. file is true for an export checked offline.
func explain(rep audit.Report, file bool) (proven, notProven []string) {
	from := "genesis"
	if a := rep.Anchor; a != nil {
		// Its dates are the retention it claims: compare them with
		// audit.retention (a holder of the master key can sign one).
		from = fmt.Sprintf("the signed retention anchor at seq %d (events older than %s pruned at %s, a retention of %s)",
			a.Seq, a.Before.UTC().Format(time.RFC3339), a.Time.UTC().Format(time.RFC3339), humanDuration(a.Time.Sub(a.Before)))
	}
	keys := map[string]string{
		audit.KeysDeployment: "a key of this deployment (its seed unseals under the master key)",
		audit.KeysJWKSFile:   "a key of the JWKS file you gave",
		audit.KeysBroker:     "a key the broker publishes now",
	}[rep.Keys]
	switch {
	case rep.Scope == audit.ScopeRange:
		start := "?"
		if rep.Start != nil {
			start = fmt.Sprintf("seq %d (hash %s)", rep.Start.Seq, short(rep.Start.Hash))
		}
		proven = append(proven, fmt.Sprintf("events seq %d..%d form one unbroken piece of a chain that continues from %s", rep.First, rep.Last, start))
		notProven = append(notProven, fmt.Sprintf("anything up to seq %d: the range line is not signed, so this is not the whole trail", max(rep.First, 1)-1))
	case rep.Events == 0:
		proven = append(proven, "the trail has no events after "+from)
	default:
		proven = append(proven, fmt.Sprintf("every event from %s through seq %d is chained, none edited, dropped or reordered", from, rep.Last))
	}
	switch {
	case rep.Signed && keys != "":
		proven = append(proven, fmt.Sprintf("the head at seq %d is signed by %s", rep.Head.Seq, keys))
	case rep.Signed:
		proven = append(proven, fmt.Sprintf("the head at seq %d is signed", rep.Head.Seq))
	case rep.Scope == audit.ScopeRange:
		notProven = append(notProven, "who wrote these events: the range does not reach the signed head, so no signature covers it")
	case rep.Keys == audit.KeysNone:
		notProven = append(notProven, "any signature: no keys were available")
	default:
		notProven = append(notProven, "any signature: there is no signed head yet")
	}
	if rep.Keys == audit.KeysBroker {
		notProven = append(notProven, "that the broker's keys are this deployment's own: they were fetched from the broker, and retired keys it no longer publishes cannot be checked (pass --jwks, or run verify where the data dir and master key are)")
	}
	if rep.Signed && rep.Unsigned > 0 {
		notProven = append(notProven, fmt.Sprintf("the %d events after the signed head: cutting them would not show until the next head is signed", rep.Unsigned))
	}
	if rep.HighWater != nil {
		proven = append(proven, fmt.Sprintf("the trail reaches its high-water mark, seq %d, kept in the signing key's authenticated record", rep.HighWater.Seq))
	}
	if file && rep.Scope != audit.ScopeRange {
		notProven = append(notProven, "that the export is the whole current trail: an export is a snapshot (run `pamctl audit verify` against the deployment for its current state)")
	} else if !file {
		notProven = append(notProven, notRolledBack(rep.Store))
	}
	return proven, notProven
}

// unsignedError says why --signed fails a chain that is consistent.
func unsignedError(rep audit.Report) string {
	const next = "verify an export that carries its signed head (a whole `pamctl audit export`, or a range reaching the head), or drop --signed to check consistency only"
	switch {
	case rep.Signed && rep.Unsigned > 0:
		return fmt.Sprintf("--signed: the %d events after the signed head at seq %d are not covered by its signature (pamctl's export ends at the head it signs, so they were added to the file); export again and verify that file", rep.Unsigned, rep.Head.Seq)
	case rep.Scope == audit.ScopeRange:
		return "--signed: the range is consistent but no signed head covers it, so anyone could have written it; " + next
	case rep.Keys == audit.KeysNone:
		return "--signed: the chain is consistent but no keys were available to check its head's signature; pass --jwks FILE"
	default:
		return "--signed: the chain is consistent but has no signed head; " + next
	}
}

// notRolledBack is what verify cannot prove of the store it read (st,
// nil from a server that does not say): that it was not rolled back or
// wiped as a whole.
func notRolledBack(st *audit.StoreRef) string {
	const anchors = "(configure audit.anchor, then run `pamctl audit verify --anchors FILE`)"
	switch {
	case st != nil && st.Backend == audit.StoreEtcd:
		return fmt.Sprintf("that the etcd cluster's data under %s was not rolled back as a whole to an earlier state (an older snapshot restored, or the prefix rewritten with its key records), or wiped with its keys: only signed heads kept outside the cluster show that %s", st.Name, anchors)
	case st != nil && st.Backend == audit.StoreBolt:
		return fmt.Sprintf("that %s was not rolled back as a whole to an earlier copy, or wiped with its keys: only signed heads kept off this host show that %s", st.Name, anchors)
	}
	return "that the store was not rolled back as a whole to an earlier copy, or wiped with its keys: only signed heads kept elsewhere show that " + anchors
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

func newCmdAuditVerify(f *Factory, so *StepUpOptions) *cobra.Command {
	var file, jwksFile, output, anchors string
	var signed bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the hash chain and signed head; exit non-zero at the first broken link",
		Long: `Verify the audit trail: every link of the hash chain, the retention anchor,
the signed head, and the high-water mark kept in the signing key's record
(authenticated under the master key), so a trail that was cut or emptied
fails. Signatures are checked only against keys proven to belong to this
deployment (their seeds unseal under the master key).

--file checks an export offline. Its signatures are checked against
--jwks FILE when given, else the data dir's keys when the data dir and
master key are here, else the JWKS the broker serves. A range export
(--since/--until) is reported as a range, never as the whole trail. A
range that does not reach its signed head, or an export without one, is
only consistent: anyone can write such a file. --signed makes the command
fail unless a head signature was checked over the events, and with --file
over every event in the file (scripts that need proof pass it).

--anchors FILE also checks the trail against signed heads kept off this host
(audit.anchor, or a sink's JSON Lines): every anchored head must match the
local event at its seq and the trail must reach the last one. This catches a
rewrite by someone who holds the master key and the data file, which the
chain and signatures alone cannot.`,
		Example: `  pamctl audit verify
  pamctl audit export > trail.jsonl && pamctl audit verify --file trail.jsonl
  curl -s https://pam.example.com/.well-known/jwks.json > jwks.json
  pamctl audit verify --file trail.jsonl --jwks jwks.json --signed -o json
  pamctl audit verify --anchors /mnt/anchors/pamctl-heads.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if jwksFile != "" && file == "" && anchors == "" {
				return withCode(ExitUsage, errors.New("--jwks checks an export: pass --file too"))
			}
			if anchors != "" && file != "" {
				return withCode(ExitUsage, errors.New("--anchors checks the deployment's current trail, not an export: drop --file"))
			}
			var heads []audit.SignedHead
			if anchors != "" {
				var err error
				if heads, err = readAnchorFile(cmd, f, anchors, jwksFile); err != nil {
					return err
				}
			}
			var ac *anchorCheck
			var res api.VerifyResult
			if file != "" {
				r, err := verifyFile(cmd, f, file, jwksFile)
				if err != nil {
					return err
				}
				res = r
			} else {
				src, err := f.openAudit(cmd, so)
				if err != nil {
					return err
				}
				defer src.Close()
				if res, err = src.Verify(cmd.Context()); err != nil {
					return err
				}
				if res.OK && heads != nil {
					if ac, err = checkAnchors(cmd, src, &res, heads, anchors); err != nil {
						return err
					}
				}
			}
			if res.OK && signed && (!res.Report.Signed || file != "" && res.Report.Unsigned > 0) {
				// Consistent, but nothing proves who wrote (some of) it:
				// with --signed that is a failure, reported as verify's
				// others. An export ends at the head it signed, so events
				// after it in a file were added; the live trail's tail is
				// checked by its authenticators instead.
				res.OK, res.Error = false, unsignedError(res.Report)
			}
			out := verifyOutput{VerifyResult: res, Proven: []string{}, NotProven: []string{}, Anchors: ac}
			if res.OK {
				out.Proven, out.NotProven = explain(res.Report, file != "")
				if ac != nil {
					out.Proven, out.NotProven = explainAnchors(ac, out.Proven, out.NotProven)
				}
			}
			if output == "json" {
				if err := f.IO.JSON(out); err != nil {
					return err
				}
			}
			if !res.OK {
				return withCode(ExitError, errors.New(res.Error))
			}
			if output != "json" {
				rep := res.Report
				if rep.Scope == audit.ScopeRange {
					start := uint64(0)
					if rep.Start != nil {
						start = rep.Start.Seq
					}
					f.IO.Successf("audit range consistent (not the whole trail): %d events (seq %d..%d) chained after seq %d", rep.Events, rep.First, rep.Last, start)
				} else {
					f.IO.Successf("audit trail intact: %d events (seq %d..%d)", rep.Events, rep.First, rep.Last)
				}
				for _, p := range out.Proven {
					f.IO.Notef("  proven:     %s", p)
				}
				for _, p := range out.NotProven {
					f.IO.Notef("  not proven: %s", p)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "verify an export file offline ('-' for stdin)")
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "with --file or --anchors: check signatures against this JWKS document")
	cmd.Flags().StringVar(&anchors, "anchors", "", "also check the trail against the signed heads anchored off-host in this file")
	cmd.Flags().BoolVar(&signed, "signed", false, "fail unless a signed head's signature was checked over the events (an unsigned range or an export without its head fails)")
	addOutputFlag(cmd, &output)
	return cmd
}

// verifyFile checks an export offline against the keys verificationKeys
// picks.
func verifyFile(cmd *cobra.Command, f *Factory, file, jwksFile string) (api.VerifyResult, error) {
	var r io.Reader = f.IO.In
	if file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return api.VerifyResult{}, withCode(ExitUsage, err)
		}
		defer fh.Close()
		r = fh
	}
	keys, source, err := verificationKeys(cmd, f, jwksFile)
	if err != nil {
		return api.VerifyResult{}, err
	}
	rep, err := audit.VerifyJSONL(r, keys)
	rep.Keys = source
	res := api.VerifyResult{OK: err == nil, Report: rep}
	var be *audit.BreakError
	if errors.As(err, &be) {
		res.Break, res.Error = be, be.Error()
		return res, nil
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// verificationKeys picks the keys an export is checked against: the JWKS
// file the user gave, else this deployment's keys (proven by the master
// key) when the data dir is here, else the broker's JWKS.
func verificationKeys(cmd *cobra.Command, f *Factory, jwksFile string) (audit.KeyFunc, string, error) {
	if jwksFile != "" {
		raw, err := safefile.ReadFile(jwksFile)
		if err != nil {
			return nil, "", withCode(ExitUsage, fmt.Errorf("--jwks: %w", err))
		}
		var doc token.JWKS
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, "", withCode(ExitUsage, fmt.Errorf("--jwks %s is not a JWKS document ({\"keys\":[...]}): %w", jwksFile, err))
		}
		ks, err := token.KeysFromJWKS(doc)
		if err != nil {
			return nil, "", withCode(ExitUsage, fmt.Errorf("--jwks: %w", err))
		}
		if len(ks) == 0 {
			return nil, "", withCode(ExitUsage, fmt.Errorf("--jwks %s holds no Ed25519 keys", jwksFile))
		}
		return audit.KeyFunc(ks.PublicKey), audit.KeysJWKSFile, nil
	}
	cfg, err := f.Config(cmd)
	if err != nil {
		return nil, "", err
	}
	if l, err := openExistingLocal(cmd.Context(), cfg); err == nil {
		defer l.Close()
		kr, err := l.keyring(cmd.Context())
		if err != nil {
			return nil, "", err
		}
		return audit.KeyFunc(kr.AnyPublicKey), audit.KeysDeployment, nil
	}
	ac, err := f.AnonClient(cfg)
	if err != nil {
		return nil, "", err
	}
	jwks, err := ac.JWKS(cmd.Context())
	if err != nil {
		return nil, "", unreachable(err, cfg.Server)
	}
	ks, err := token.KeysFromJWKS(jwks)
	if err != nil {
		return nil, "", err
	}
	return audit.KeyFunc(ks.PublicKey), audit.KeysBroker, nil
}

// parseWhen reads a point in time: RFC 3339, or a duration ago ("24h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration ago such as 24h or 7d", s)
	}
	return now.Add(-d), nil
}

func newCmdAuditExport(f *Factory, so *StepUpOptions) *cobra.Command {
	var out, sinceS, untilS string
	var toTerminal bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export the whole trail as JSON Lines with its chain fields and signed head",
		Long: `Export the trail as JSON Lines (constant memory): the retention anchor if
any, one event per line with prev_hash and hash, and the signed head last, so
anyone can verify it offline with 'pamctl audit verify --file'.

--since/--until export a contiguous range; it starts with a line naming the
event before it, so it verifies as a consistent piece of the chain, and it
is signature-checked when the range reaches the signed head.

The lines are the exact bytes the hash chain covers, so text in events is
written as stored: bidi controls, tag characters and other characters a
terminal obeys or shows as nothing included. Writing them to a terminal is
refused; write to a file (--file, or redirect) and read events with
'pamctl audit tail' or 'audit show', which show such characters as escapes.`,
		Example: `  pamctl audit export > trail.jsonl
  pamctl audit export --since 7d --file week.jsonl
  pamctl audit export --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			since, err := parseWhen(sinceS, f.Now())
			if err != nil {
				return withCode(ExitUsage, fmt.Errorf("--since: %w", err))
			}
			until, err := parseWhen(untilS, f.Now())
			if err != nil {
				return withCode(ExitUsage, fmt.Errorf("--until: %w", err))
			}
			if (out == "" || out == "-") && f.IO.IsStdoutTTY() && !toTerminal {
				return withCode(ExitUsage, errors.New("audit export writes the exact hash-chained lines, which may hold bidi controls and invisible characters a terminal would obey or hide, so it does not write them to a terminal: write them to a file (--file trail.jsonl, or > trail.jsonl) and check it with 'pamctl audit verify --file trail.jsonl', or read events with 'pamctl audit tail' or 'pamctl audit show', which show such characters as escapes. Run through 'kubectl exec -t', 'docker exec -t' or 'ssh -t' with the redirect on your side? Drop -t, or pass --to-terminal"))
			}
			src, err := f.openAudit(cmd, so)
			if err != nil {
				return err
			}
			defer src.Close()
			if out == "" || out == "-" {
				return src.Export(cmd.Context(), f.IO.Out, since, until)
			}
			return writeExportFile(out, toTerminal, func(w io.Writer) error {
				return src.Export(cmd.Context(), w, since, until)
			})
		},
	}
	cmd.Flags().StringVar(&out, "file", "", "write to this file instead of stdout: a new private file (mode 0600), replacing a regular file of that name once the export is whole")
	cmd.Flags().BoolVar(&toTerminal, "to-terminal", false, "write the exact lines even when stdout is a terminal (a pseudo-terminal whose output is redirected on the other side: kubectl exec -t, ssh -t)")
	cmd.Flags().StringVar(&sinceS, "since", "", "first event time: RFC 3339, or a duration ago (24h, 7d)")
	cmd.Flags().StringVar(&untilS, "until", "", "end (exclusive): RFC 3339, or a duration ago")
	return cmd
}

// actorLabel names an event's actor for a person: the display name the IdP
// gave (preferred_username, email, name), with the subject the trail keys
// on when they differ, and the act of a workload acting for a person.
func actorLabel(a *audit.Actor) string {
	return partyLabel(a.Display, a.Subject, a.Issuer, "") + actLabel(a.Act, "")
}
