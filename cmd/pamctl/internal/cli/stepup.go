package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// EnvNoSession is set by `pamctl exec` in its child's environment: a pamctl
// run there refuses to use (or replace) the person's session. See
// docs/sessions.md for what this does and does not stop.
const EnvNoSession = "PAMCTL_NO_SESSION"

// refuseUnderExec refuses what needs a person's session inside `pamctl
// exec`'s child. what says what was attempted ("use your session").
func refuseUnderExec(what string) error {
	if os.Getenv(EnvNoSession) == "" {
		return nil
	}
	return withCode(ExitUnauthenticated, fmt.Errorf("this process runs under `pamctl exec` (%s is set): it holds an agent's scoped token, not a person's session, so it cannot %s; approving, denying, revoking, requesting and reading the audit trail are for the person, from their own shell", EnvNoSession, what))
}

// StepUpOptions are the flags of commands that may need a recent login
// (approve, deny, revoke, audit …).
type StepUpOptions struct {
	// Device logs in again with the device flow instead of the browser.
	Device bool
	// NoInput never logs in for the user: a step-up fails with exit code 4.
	NoInput bool
	// Target, when set, names what the action is on for the confirmation
	// question ("req_… (alice: model:gpt-4o)"); asked only when a step-up
	// login is about to start.
	Target func(ctx context.Context) string
}

func addStepUpFlags(cmd *cobra.Command, o *StepUpOptions, persistent bool) {
	fs := cmd.Flags()
	if persistent {
		fs = cmd.PersistentFlags()
	}
	fs.BoolVar(&o.Device, "device", false, "when a recent login is needed, log in again with the device flow")
	fs.BoolVar(&o.NoInput, "no-input", false, "never log in again for you: fail (exit 4) when a recent login is needed")
}

// withStepUp runs call with the session in c. When the broker answers that
// the action needs a more recent login (step-up), it says why, asks the
// person on the terminal to confirm a login for this action (so.Target
// names its object) when the login would send them to the IdP, logs in
// again the way the session was made (asking the IdP to authenticate the
// person now), puts the new session into c, and runs call once more.
func (f *Factory) withStepUp(cmd *cobra.Command, cfg *Config, c *api.Client, so *StepUpOptions, call func() error) error {
	err := call()
	var su *broker.StepUpError
	if !errors.As(err, &su) {
		return err
	}
	if c.Token == "" { // the admin socket never steps up; be safe
		return withCode(ExitUnauthenticated, err)
	}
	if su.NoAuthTime == broker.NoAuthTimeIdP {
		// Logging in again through the same IdP would not help; the
		// broker's message says what will.
		return withCode(ExitUnauthenticated, su)
	}
	reason := su.Reason()
	if so == nil {
		so = &StepUpOptions{}
	}
	sess, _ := loadSession()
	lo, how, ok := f.reloginOptions(sess, so)
	if !ok {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s: log in again with `pamctl login` and retry (%s)", reason, how))
	}
	what := su.Action
	if so.Target != nil {
		if t := so.Target(cmd.Context()); t != "" {
			what += " " + t
		}
	}
	if lo.IDTokenFile == "" && lo.User == "" {
		// A person is about to be sent to the IdP. Whoever runs this
		// command may be an agent with the person's CLI: the person, at
		// the terminal, confirms first, knowing what for.
		if err := f.confirmStepUp(cmd.Context(), what, reason); err != nil {
			return err
		}
		lo.Purpose = what
	}
	f.IO.Notef("%s; logging in again (%s)…", reason, how)
	maxAge := int64(su.MaxAge / time.Second)
	if maxAge <= 0 {
		maxAge = int64(broker.DefaultReauthAfter / time.Second)
	}
	newSess, err := f.login(cmd.Context(), cfg, lo, maxAge)
	if err != nil {
		return fmt.Errorf("%s, and logging in again failed: %w", reason, err)
	}
	// The new session replaces the old one in session.json; end the old
	// one on the broker too, so a copy of the old file dies with it.
	old := *c
	if err := old.Logout(cmd.Context()); err != nil {
		f.IO.Notef("the previous session could not be ended (it ends by itself at its expiry): %s", errorText(err))
	}
	c.Token = newSess.Token
	err = call()
	if errors.As(err, &su) {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s even after logging in again: your identity provider did not authenticate you afresh (it reuses its own session and ignores prompt=login and max_age); sign out at the identity provider and run `pamctl login`, or ask its admin to honour max_age", su.Reason()))
	}
	return err
}

// stepUpAnswerWait is how long the step-up question waits for an answer.
var stepUpAnswerWait = 2 * time.Minute

// confirmAlphabet is what a step-up code is made of: capitals and digits
// that no one reads as another (no 0/O, 1/I/L, 2/Z, 5/S, 8/B, U/V).
const confirmAlphabet = "ACDEFGHJKMNPRTWXY3479"

// confirmCode is a fresh code of 4 characters of confirmAlphabet.
func confirmCode() (string, error) {
	b := make([]byte, 4)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(confirmAlphabet))))
		if err != nil {
			return "", err
		}
		b[i] = confirmAlphabet[n.Int64()]
	}
	return string(b), nil
}

// confirmStepUp asks the person on the controlling terminal (never stdin,
// which whoever started pamctl may feed) to type a code shown only in the
// question before a step-up login for what: not a word like yes, which an
// agent's own interface may ask the person to type into the same
// terminal. No terminal, any other answer, no answer within
// stepUpAnswerWait, or ctx ending (Ctrl-C) refuses with exit 4; the
// terminal is closed when the question ends.
func (f *Factory) confirmStepUp(ctx context.Context, what, reason string) error {
	code, err := confirmCode()
	if err != nil {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: could not make a confirmation code (%v): log in with `pamctl login` and retry", reason, err))
	}
	open := f.Terminal
	if open == nil {
		open = openTerminal
	}
	tty, err := open()
	if err != nil {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: there is no terminal to confirm it on (%v): log in again with `pamctl login` and retry", reason, err))
	}
	defer tty.Close() // also ends the read below when the question is given up
	wait := broker.HumanAge(stepUpAnswerWait)
	fmt.Fprintf(tty, "pamctl: %s.\nTo go on, pamctl starts a new login at your identity provider for: %s\nIf you did not run this command yourself just now, do not type the code: a program using your session may have.\nType %s to log in again (within %s; anything else refuses; Ctrl-C cancels): ", iostreams.Escape(reason), iostreams.Escape(what), code, wait)
	type answer struct {
		line string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(io.LimitReader(tty, 256)).ReadString('\n')
		answered <- answer{line, err}
	}()
	timer := time.NewTimer(stepUpAnswerWait)
	defer timer.Stop()
	var a answer
	select {
	case a = <-answered:
	case <-ctx.Done():
		fmt.Fprintln(tty)
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: the question was cancelled (%w): run it again to answer it, or log in with `pamctl login` and retry", reason, context.Cause(ctx)))
	case <-timer.C:
		fmt.Fprintf(tty, "\npamctl: no answer within %s; not logging in again.\n", wait)
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: no answer on the terminal within %s: run it again and answer, or log in with `pamctl login` and retry", reason, wait))
	}
	if a.err != nil && a.line == "" {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: no answer on the terminal: run it again and type the code it shows, or log in with `pamctl login` and retry", reason))
	}
	if strings.TrimSpace(a.line) != code {
		return withCode(ExitUnauthenticated, fmt.Errorf("%s; not logging in again: what was typed is not the code the question showed: run it again, or log in with `pamctl login` and retry, if you meant it", reason))
	}
	return nil
}

// reloginOptions picks how to log in again: the way the session was made
// (a workload's ID token file is read again; the dev issuer auto-consents),
// else interactively (browser, or the device flow with --device, when the
// session was made with it, or when there is no browser). ok is false when
// no login can happen here (--no-input, a token from stdin, no terminal for
// an interactive login); how then says why.
func (f *Factory) reloginOptions(sess *SessionFile, so *StepUpOptions) (lo *LoginOptions, how string, ok bool) {
	if so.NoInput {
		return nil, "--no-input: not logging in for you", false
	}
	lo = &LoginOptions{f: f, Device: so.Device}
	var rec LoginRecord
	if sess != nil && sess.Login != nil {
		rec = *sess.Login
	}
	lo.Issuer, lo.ClientSecretFile = rec.Issuer, rec.ClientSecretFile
	switch {
	case rec.IDTokenFile != "":
		lo.IDTokenFile, lo.Device = rec.IDTokenFile, false
		return lo, "reading the ID token file again", true
	case rec.DevUser != "":
		lo.User, lo.Groups = rec.DevUser, rec.DevGroups
		return lo, "development issuer", true
	case sess != nil && sess.Login != nil && sess.Login.Issuer == "" && !rec.Device:
		// A workload token read from stdin: nothing to read again.
		return nil, "the session was made from an ID token on stdin", false
	}
	if !f.IO.IsStdinTTY() && !f.IO.IsStderrTTY() {
		return nil, "no terminal to log in from", false
	}
	if rec.Device || !browserAvailable() {
		lo.Device = true
	}
	if lo.Device {
		return lo, "device flow", true
	}
	return lo, "browser", true
}

// browserAvailable guesses whether a browser can be opened here: not over
// SSH, and on Linux and the BSDs only with a display.
func browserAvailable() bool {
	if os.Getenv("SSH_CONNECTION") != "" || os.Getenv("SSH_TTY") != "" {
		return false
	}
	switch runtime.GOOS {
	case "darwin", "windows":
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" || os.Getenv("BROWSER") != ""
}

// openTerminal opens the controlling terminal, for a question only the
// person at it can answer: not stdin, which a pipe may feed.
func openTerminal() (io.ReadWriteCloser, error) {
	if runtime.GOOS == "windows" {
		in, err := os.Open("CONIN$")
		if err != nil {
			return nil, err
		}
		out, err := os.OpenFile("CONOUT$", os.O_WRONLY, 0)
		if err != nil {
			in.Close()
			return nil, err
		}
		return console{in, out}, nil
	}
	return os.OpenFile("/dev/tty", os.O_RDWR, 0)
}

// console is Windows' terminal: input and output are two files.
type console struct{ in, out *os.File }

func (c console) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c console) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c console) Close() error                { return errors.Join(c.in.Close(), c.out.Close()) }
