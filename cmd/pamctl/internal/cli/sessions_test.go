package cli

import (
	"testing"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

func TestSessionsFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := NewFactory(ios)
	var got *SessionsOptions
	var rev *SessionsRevokeOptions
	run := func(args ...string) error {
		got, rev = nil, nil
		cmd := NewCmdSessions(f,
			func(_ *cobra.Command, o *SessionsOptions) error { got = o; return nil },
			func(_ *cobra.Command, o *SessionsRevokeOptions) error { rev = o; return nil })
		usageArgs(cmd)
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		return cmd.Execute()
	}
	if err := run("--user", "alice", "--ended", "-o", "json"); err != nil || got == nil || got.User != "alice" || !got.Ended || got.Output != "json" || got.All || got.Admin {
		t.Fatalf("sessions: %v %+v", err, got)
	}
	if err := run("--all", "--admin"); err != nil || !got.All || !got.Admin {
		t.Fatalf("sessions --all --admin: %v %+v", err, got)
	}
	if err := run("-o", "yaml"); exitCodeOf(err) != ExitUsage {
		t.Fatalf("-o yaml: %v", err)
	}
	if err := run("revoke", "ses_x"); err != nil || rev == nil || rev.ID != "ses_x" || rev.User != "" || rev.Grants {
		t.Fatalf("revoke ID: %v %+v", err, rev)
	}
	if err := run("revoke", "--user", "alice", "--grants", "--reason", "stolen laptop"); err != nil || rev.User != "alice" || !rev.Grants || rev.Reason != "stolen laptop" {
		t.Fatalf("revoke --user: %v %+v", err, rev)
	}
	for _, bad := range [][]string{{"revoke"}, {"revoke", "ses_x", "--user", "alice"}, {"revoke", "a", "b"}} {
		if err := run(bad...); exitCodeOf(err) != ExitUsage || rev != nil {
			t.Fatalf("%v: %v (ran: %v)", bad, err, rev != nil)
		}
	}
}
