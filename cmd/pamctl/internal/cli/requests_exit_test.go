package cli

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// jsonState is the "state" of a request printed with -o json.
func jsonState(out string) string {
	var r struct {
		State string `json:"state"`
	}
	if json.Unmarshal([]byte(out), &r) != nil {
		return ""
	}
	return r.State
}

func TestRequestWaitFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		nowait bool
	}{
		{[]string{"--scope", "model:gpt-4o"}, false},
		{[]string{"--scope", "model:gpt-4o", "--wait"}, false},
		{[]string{"--scope", "model:gpt-4o", "--nowait"}, true},
		{[]string{"--scope", "model:gpt-4o", "--wait=false"}, true},
	} {
		ios, _, _, _ := iostreams.Test()
		var got *RequestOptions
		cmd := NewCmdRequest(NewFactory(ios), func(_ *cobra.Command, o *RequestOptions) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got.NoWait != tc.nowait {
			t.Errorf("%v: NoWait %v, want %v", tc.args, got.NoWait, tc.nowait)
		}
	}
}

// reportRequest decides the exit status: a created request is success when
// the caller did not wait, whatever its state.
func TestReportRequestExitStatus(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		state  broker.State
		waited bool
		want   int
	}{
		{broker.StateApproved, false, ExitOK},
		{broker.StatePending, false, ExitOK},
		{broker.StateDenied, false, ExitOK},
		{broker.StateExpired, false, ExitOK},
		{broker.StateApproved, true, ExitOK},
		{broker.StatePending, true, ExitPending},
		{broker.StateDenied, true, ExitForbidden},
		{broker.StateExpired, true, ExitForbidden},
	} {
		for _, output := range []string{"", "json"} {
			ios, _, out, _ := iostreams.Test()
			r := &broker.Request{ID: "req_x", State: tc.state, Scopes: []string{"model:gpt-4o"}, ExpiresAt: &exp}
			err := reportRequest(NewFactory(ios), r, output, tc.waited)
			code := ExitOK
			if err != nil {
				code = exitCodeOf(err)
			}
			if code != tc.want {
				t.Errorf("%s waited=%v -o %q: exit %d, want %d", tc.state, tc.waited, output, code, tc.want)
			}
			if output == "json" && jsonState(out.String()) != string(tc.state) {
				t.Errorf("%s -o json printed %q", tc.state, out.String())
			}
		}
	}
}

// Through a running server: --nowait exits 0 for a pending and an approved
// request; waiting exits 8 when the wait ends pending and 5 when denied.
func TestRequestExitCodesEndToEnd(t *testing.T) {
	s := startServer(t)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")

	r := s.as(t, "alice", "", "request", "--scope", "model:gpt-4o", "--nowait", "-o", "json")
	if r.code != ExitOK || jsonState(r.out) != "pending" {
		t.Fatalf("--nowait pending: %+v", r)
	}
	r = s.as(t, "bob", "", "request", "--scope", "audit:read", "--nowait", "-o", "json")
	if r.code != ExitOK || jsonState(r.out) != "approved" {
		t.Fatalf("--nowait approved: %+v", r)
	}
	if r := s.as(t, "alice", "", "request", "--scope", "model:o1", "--nowait"); r.code != ExitForbidden {
		t.Fatalf("--nowait out of policy: %+v", r)
	}

	// Waiting, and the wait ends (Ctrl-C: the context ends) while pending.
	s.as(t, "alice", "", "whoami").must(t, "whoami") // the environment is alice's from here
	r = s.asWithin(1500*time.Millisecond, "request", "--scope", "model:gpt-4o-mini", "-o", "json")
	if r.code != ExitPending || !strings.Contains(r.err, "still pending") {
		t.Fatalf("wait ended pending: %+v", r)
	}

	// Waiting, and an approver denies.
	done := make(chan result, 1)
	go func() {
		done <- s.asWithin(20*time.Second, "request", "--scope", "model:gpt-4o", "--reason", "deny me")
	}()
	var id string
	// Poll as alice, so the environment stays hers until her waiting
	// command has read its session (the request exists).
	for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var rs []broker.Request
		json.Unmarshal([]byte(s.as(t, "alice", "", "requests", "--pending", "-o", "json").out), &rs)
		for _, q := range rs {
			if q.Reason == "deny me" {
				id = q.ID
			}
		}
	}
	if id == "" {
		t.Fatal("the waiting request never showed up")
	}
	s.as(t, "bob", "", "deny", id).must(t, "deny")
	if r := <-done; r.code != ExitForbidden || !strings.Contains(r.err, "denied") {
		t.Fatalf("wait ended denied: %+v", r)
	}
}

// asWithin runs a command as whoever the environment names (the last
// s.as), with its own deadline standing in for Ctrl-C. It does not touch
// the environment, so it may run in a goroutine.
func (s *testServer) asWithin(d time.Duration, args ...string) result {
	ios, _, out, errOut := iostreams.Test()
	root := NewCmdRoot(NewFactory(ios))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code := ExitOK
	if err != nil {
		code = exitCodeOf(err)
		if !errors.Is(err, errSilent) {
			errOut.WriteString("error: " + err.Error() + "\n")
		}
	}
	return result{out: out.String(), err: errOut.String(), code: code}
}
