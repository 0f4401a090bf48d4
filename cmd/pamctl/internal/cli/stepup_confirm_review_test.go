package cli

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// Ctrl-C at the step-up question: Main turns SIGINT into a cancelled
// context (signal.NotifyContext), so the question must end when the
// command's context does. confirmStepUp reads the terminal with no regard
// for the context, so a person who presses Ctrl-C at "Type yes to log in
// again:" is left at the prompt, and an agent-started pamctl whose person
// walked away never exits.
func TestStepUpQuestionEndsWithTheCommandsContext(t *testing.T) {
	srv, logins := stepUpBroker(t, "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("PAMCTL_CONFIG", "")
	t.Setenv("PAMCTL_SERVER", srv.URL)
	t.Setenv(EnvNoSession, "")
	if err := saveSession(&SessionFile{Server: srv.URL, ID: "ses_1", Token: "tok", Identity: broker.Identity{Subject: "bob", Issuer: "corp"},
		ExpiresAt: time.Now().Add(time.Hour), Login: &LoginRecord{Issuer: "corp"}}); err != nil {
		t.Fatal(err)
	}
	ios, _, _, _ := iostreams.Test()
	ios.SetTTY(true, true, true)
	f := NewFactory(ios)
	pr, pw := io.Pipe() // the person never answers
	defer pw.Close()
	tty := &fakeTerminal{in: pr}
	f.Terminal = func() (io.ReadWriteCloser, error) { return tty, nil }
	root := NewCmdRoot(f)
	root.SetArgs([]string{"approve", "req_1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	time.Sleep(500 * time.Millisecond) // the question is up
	cancel()                           // Ctrl-C
	select {
	case err := <-done:
		if err == nil || logins.Load() != 0 {
			t.Fatalf("after Ctrl-C: %v, %d logins", err, logins.Load())
		}
		if !errors.Is(err, context.Canceled) && exitCodeOf(err) == ExitOK {
			t.Fatalf("after Ctrl-C: %v", err)
		}
		if tty.closed == 0 {
			t.Fatal("the terminal was left open")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the step-up question ignores the cancelled context: Ctrl-C does not end `pamctl approve`")
	}
}

// Nobody answers the step-up question: it gives up after stepUpAnswerWait
// (saying so on the terminal), exits 4 and closes the terminal, so a
// pamctl an agent started while its person is away ends.
func TestStepUpQuestionGivesUpWithoutAnAnswer(t *testing.T) {
	defer func(d time.Duration) { stepUpAnswerWait = d }(stepUpAnswerWait)
	stepUpAnswerWait = 300 * time.Millisecond
	srv, logins := stepUpBroker(t, "")
	pr, pw := io.Pipe() // the person never answers
	defer pw.Close()
	// Should the question never give up, the terminal ends after 10s and
	// the test fails instead of hanging.
	defer time.AfterFunc(10*time.Second, func() { pw.Close() }).Stop()
	tty := &fakeTerminal{in: pr}
	start := time.Now()
	r := approveWithTerminal(t, srv, tty, "")
	if r.code != ExitUnauthenticated || !strings.Contains(r.err, "no answer on the terminal within") || !strings.Contains(r.err, "pamctl login") || logins.Load() != 0 {
		t.Fatalf("exit %d, %d logins:\n%s", r.code, logins.Load(), r.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("gave up after %s", d)
	}
	if q := tty.out.String(); !strings.Contains(q, "no answer within") || tty.closed == 0 {
		t.Fatalf("closed %d times; terminal:\n%s", tty.closed, q)
	}
}
