package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// fakeTerminal is the controlling terminal of a test: what the person
// types (in; or, when answer is set, answer of the code the question
// showed), and what pamctl wrote to it.
type fakeTerminal struct {
	in     io.Reader
	answer func(code string) string
	mu     sync.Mutex
	out    bytes.Buffer
	opened int
	closed int
}

// questionCode finds the code in a step-up question ("Type ABCD to log in
// again"), or "".
var questionCode = regexp.MustCompile(`Type ([A-Z0-9]{4}) to log in again`)

func (t *fakeTerminal) Read(p []byte) (int, error) {
	if t.in == nil && t.answer != nil {
		m := questionCode.FindStringSubmatch(t.question())
		if m == nil {
			return 0, io.EOF
		}
		t.in = strings.NewReader(t.answer(m[1]) + "\n")
	}
	return t.in.Read(p)
}

func (t *fakeTerminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.Write(p)
}

func (t *fakeTerminal) Close() error { t.closed++; return nil }

// question is what pamctl wrote to the terminal.
func (t *fakeTerminal) question() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

// typesCode is a person who types the code the question shows.
func typesCode(code string) string { return code }

// stepUpBroker answers every approval with step_up_required (no_auth_time
// as given; action ActionApprove, or the first of action), a request for GET, and counts logins started (GET /v1/info,
// answered 503 so the login stops there).
func stepUpBroker(t *testing.T, noAuthTime string, action ...string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	act := broker.ActionApprove
	if len(action) > 0 {
		act = action[0]
	}
	var logins atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/requests/req_1", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(broker.Request{ID: "req_1", Requester: broker.Identity{Subject: "alice", Issuer: "corp"}, Scopes: []string{"model:gpt-4o"}})
	})
	mux.HandleFunc("POST /v1/requests/req_1/approve", func(w http.ResponseWriter, _ *http.Request) {
		var eb api.ErrorBody
		eb.Error.Code, eb.Error.Message = broker.CodeStepUpRequired, "approving needs a login within the last 10m"
		eb.Error.StepUp = &api.StepUpDetail{Action: act, MaxAgeSeconds: 600, NoAuthTime: noAuthTime}
		if noAuthTime == "" {
			at := time.Now().Add(-40 * time.Minute).UTC()
			eb.Error.StepUp.AuthTime, eb.Error.StepUp.AgeSeconds = &at, 2400
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(eb)
	})
	mux.HandleFunc("GET /v1/whoami", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(api.WhoAmI{Identity: broker.Identity{Subject: "bob", Issuer: "corp"}, ExpiresAt: time.Now().Add(time.Hour), NoAuthTime: noAuthTime})
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) {
		logins.Add(1)
		http.Error(w, "no logins in this test", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &logins
}

// approveWithTerminal runs `pamctl approve req_1 args…` as a person whose
// session came from a browser login (stepUpFactory).
func approveWithTerminal(t *testing.T, srv *httptest.Server, tty *fakeTerminal, stdin string, args ...string) result {
	t.Helper()
	f, out, errOut := stepUpFactory(t, srv, tty, stdin)
	return execRoot(context.Background(), f, out, errOut, append([]string{"approve", "req_1"}, args...)...)
}

// stepUpFactory is the CLI of a person whose session, for srv, came from a
// browser login, on streams that look like a terminal, with tty as the
// controlling terminal (nil: there is none) and stdin holding stdin; it
// returns the factory and its stdout and stderr.
func stepUpFactory(t *testing.T, srv *httptest.Server, tty *fakeTerminal, stdin string) (*Factory, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("PAMCTL_CONFIG", "")
	t.Setenv("PAMCTL_SERVER", srv.URL)
	t.Setenv(EnvNoSession, "")
	if err := saveSession(&SessionFile{Server: srv.URL, ID: "ses_1", Token: "tok", Identity: broker.Identity{Subject: "bob", Issuer: "corp"},
		ExpiresAt: time.Now().Add(time.Hour), Login: &LoginRecord{Issuer: "corp"}}); err != nil {
		t.Fatal(err)
	}
	ios, in, out, errOut := iostreams.Test()
	ios.SetTTY(true, true, true)
	in.WriteString(stdin)
	f := NewFactory(ios)
	f.Terminal = func() (io.ReadWriteCloser, error) {
		if tty == nil {
			return nil, errors.New("open /dev/tty: no such device or address")
		}
		tty.opened++
		return tty, nil
	}
	return f, out, errOut
}

// A step-up login for an interactive session starts only after the person
// types, on the controlling terminal, the random code the question shows,
// having been told what it is for; yes, a code in the wrong case, stdin
// or an earlier code cannot answer, and without a terminal the command
// exits 4 saying to run `pamctl login`.
func TestStepUpLoginAsksOnTheTerminal(t *testing.T) {
	srv, logins := stepUpBroker(t, "")
	codes := map[string]bool{}
	for _, flow := range [][]string{{"--device"}, nil, nil} {
		logins.Store(0)
		tty := &fakeTerminal{answer: func(code string) string { codes[code] = true; return code }}
		r := approveWithTerminal(t, srv, tty, "", flow...)
		q := tty.question()
		if !strings.Contains(q, "approving req_1 (alice: model:gpt-4o)") {
			t.Fatalf("%v: the question does not say what the login is for:\n%s", flow, q)
		}
		if !strings.Contains(q, "your last was 40m ago") || !questionCode.MatchString(q) {
			t.Fatalf("%v: question:\n%s", flow, q)
		}
		if logins.Load() == 0 || !strings.Contains(r.err, "logging in again") {
			t.Fatalf("%v: the code did not start the login: %d logins\n%s", flow, logins.Load(), r.err)
		}
		for code := range codes {
			if strings.Contains(r.err, code) {
				t.Fatalf("the code is shown outside the question:\n%s", r.err)
			}
		}
	}
	if len(codes) < 2 {
		t.Fatalf("every question showed the same code: %v", codes)
	}
	var earlier string
	for code := range codes {
		earlier = code
	}

	for _, c := range []struct {
		name, stdin string
		answer      func(code string) string
		tty         bool
		want        string
	}{
		{"yes", "", func(string) string { return "yes" }, true, "not the code the question showed"},
		{"no", "", func(string) string { return "no" }, true, "not the code the question showed"},
		{"the code in lower case", "", strings.ToLower, true, "not the code the question showed"},
		{"the code and more", "", func(code string) string { return code + "X" }, true, "not the code the question showed"},
		{"an earlier code", "", func(code string) string {
			if code == earlier {
				return "-"
			}
			return earlier
		}, true, "not the code the question showed"},
		{"nothing typed", "", nil, true, "no answer on the terminal"},
		{"no terminal, yes on stdin", "yes\n", nil, false, "no terminal to confirm it on"},
	} {
		t.Run(c.name, func(t *testing.T) {
			logins.Store(0)
			var tty *fakeTerminal
			if c.tty {
				tty = &fakeTerminal{answer: c.answer}
				if c.answer == nil {
					tty.in = strings.NewReader("")
				}
			}
			r := approveWithTerminal(t, srv, tty, c.stdin)
			if r.code != ExitUnauthenticated || !strings.Contains(r.err, c.want) || !strings.Contains(r.err, "pamctl login") || logins.Load() != 0 {
				t.Fatalf("exit %d, %d logins:\n%s", r.code, logins.Load(), r.err)
			}
		})
	}

	// --no-input never asks and never logs in.
	logins.Store(0)
	tty := &fakeTerminal{answer: typesCode}
	if r := approveWithTerminal(t, srv, tty, "", "--no-input"); r.code != ExitUnauthenticated || !strings.Contains(r.err, "--no-input") || tty.opened != 0 || logins.Load() != 0 {
		t.Fatalf("--no-input: exit %d, terminal opened %d times, %d logins\n%s", r.code, tty.opened, logins.Load(), r.err)
	}
}

// A session whose IdP sent no auth_time cannot step up by logging in again
// through it: the CLI says so and what to do, without asking or logging in.
func TestStepUpWithoutAuthTimeDoesNotLogInAgain(t *testing.T) {
	srv, logins := stepUpBroker(t, broker.NoAuthTimeIdP)
	tty := &fakeTerminal{answer: typesCode}
	r := approveWithTerminal(t, srv, tty, "")
	if r.code != ExitUnauthenticated || !strings.Contains(r.err, "did not report when you authenticated") || !strings.Contains(r.err, "step_up_without_auth_time") ||
		tty.opened != 0 || logins.Load() != 0 {
		t.Fatalf("exit %d, terminal opened %d times, %d logins\n%s", r.code, tty.opened, logins.Load(), r.err)
	}
	// whoami says so too.
	if r := runCLI(t, "whoami"); r.code != ExitOK || !strings.Contains(r.out, "not known: your identity provider did not report when you authenticated") {
		t.Fatalf("whoami: %+v", r)
	}
}

// The step-up question is written to the person's terminal: what the
// broker said (the action) cannot move the cursor, recolour, clear the
// screen or reorder the text there.
func TestStepUpQuestionEscapesTheBrokersText(t *testing.T) {
	const hostile = "approving\x1b[2J\x1b[1A\r\u202eTYPE THE CODE\u202c\n"
	srv, _ := stepUpBroker(t, "", hostile)
	tty := &fakeTerminal{in: strings.NewReader("")}
	approveWithTerminal(t, srv, tty, "")
	q := tty.question()
	if !strings.Contains(q, `approving\x1b[2J\x1b[1A\r\u202eTYPE THE CODE\u202c\n needs a login`) {
		t.Fatalf("the reason is not shown escaped:\n%q", q)
	}
	for _, raw := range []string{"\x1b", "\r", "\u202e", "\u202c", "CODE\n"} {
		if strings.Contains(q, raw) {
			t.Fatalf("the question carries %q raw:\n%q", raw, q)
		}
	}
}

// Ctrl-C at the step-up question: Main turns SIGINT into a cancelled
// context (signal.NotifyContext), so the question ends when the command's
// context does, exits 4 and closes the terminal; otherwise a person who
// presses Ctrl-C is left at the prompt. (Reviewer's test, /tmp/r2 2ab7ec3.)
func TestStepUpQuestionEndsWithTheCommandsContext(t *testing.T) {
	srv, logins := stepUpBroker(t, "")
	pr, pw := io.Pipe() // the person never answers
	defer pw.Close()
	tty := &fakeTerminal{in: pr}
	f, out, errOut := stepUpFactory(t, srv, tty, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- execRoot(ctx, f, out, errOut, "approve", "req_1") }()
	time.Sleep(500 * time.Millisecond) // the question is up
	cancel()                           // Ctrl-C
	select {
	case r := <-done:
		if r.code != ExitUnauthenticated || !strings.Contains(r.err, "the question was cancelled") || logins.Load() != 0 {
			t.Fatalf("after Ctrl-C: exit %d, %d logins\n%s", r.code, logins.Load(), r.err)
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
	if q := tty.question(); !strings.Contains(q, "no answer within") || tty.closed == 0 {
		t.Fatalf("closed %d times; terminal:\n%s", tty.closed, q)
	}
}

// A Windows console (CONIN$, cooked mode) ends the typed line with
// "\r\n": the code is accepted as from /dev/tty.
func TestStepUpAcceptsAConsoleLineEnd(t *testing.T) {
	srv, logins := stepUpBroker(t, "")
	tty := &fakeTerminal{answer: func(code string) string { return code + "\r" }}
	r := approveWithTerminal(t, srv, tty, "")
	if logins.Load() == 0 || !strings.Contains(r.err, "logging in again") {
		t.Fatalf("the code typed on a console did not start the login: %d logins\n%s", logins.Load(), r.err)
	}
}
