//go:build unix

package safefile

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The command a refusal or warning says to run is one a shell runs as
// meant whatever the path holds (found while checking file_problems: the
// path went into the command as it is, so a directory named
// "a; touch pwned" made `chmod go-rwx /…/a; touch pwned/k`, and a path with
// a space made a command that changes the wrong file).
func TestFixCommandsQuoteThePath(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	base := t.TempDir()
	for _, name := range []string{"a; touch pwned", "b $(touch pwned) `touch pwned`", "c 'x' \"y\" z", "-d\ttab", "e\nnewline"} {
		t.Run(name, func(t *testing.T) {
			dir := mk(t, filepath.Join(base, name), os.ModeDir|0o700)
			for _, c := range []struct {
				what   string
				path   string
				mode   os.FileMode
				secret bool
				want   os.FileMode // the mode once the command ran
			}{
				{"secret readable by others", filepath.Join(dir, "k"), 0o644, true, 0o600},
				{"writable by others", filepath.Join(dir, "w"), 0o666, false, 0o664},
			} {
				p := mk(t, c.path, c.mode)
				w, err := CheckPerms(p, c.secret)
				msg := w
				if err != nil {
					msg = err.Error()
				}
				m := []string{"", fixCommand(msg)}
				if m[1] == "" {
					t.Fatalf("%s: no command to run in %q", c.what, msg)
				}
				cmd := exec.Command(sh, "-c", m[1])
				cmd.Dir = base
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: `%s` failed: %v %s", c.what, m[1], err, out)
				}
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != c.want {
					t.Errorf("%s: after `%s` the mode is %04o, want %04o", c.what, m[1], fi.Mode().Perm(), c.want)
				}
				if _, err := os.Stat(filepath.Join(base, "pwned")); err == nil {
					t.Fatalf("%s: `%s` ran another command", c.what, m[1])
				}
			}
		})
	}
}

// fixCommand is the command after "run `" in msg, up to the backtick that
// ends it: after "chmod MODE ", a plain word or a single-quoted one (shq),
// which may hold backticks.
func fixCommand(msg string) string {
	m := regexp.MustCompile("run `(chmod [^ `]+ )").FindStringSubmatchIndex(msg)
	if m == nil {
		return ""
	}
	head, rest := msg[m[2]:m[3]], msg[m[3]:]
	if !strings.HasPrefix(rest, "'") {
		word, _, ok := strings.Cut(rest, "`")
		if !ok {
			return ""
		}
		return head + word
	}
	for i := 1; i < len(rest); i++ {
		if rest[i] != '\'' {
			continue
		}
		if strings.HasPrefix(rest[i:], `'\''`) {
			i += 3
			continue
		}
		if strings.HasPrefix(rest[i+1:], "`") {
			return head + rest[:i+1]
		}
		return ""
	}
	return ""
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/pamctl/tls.key": "/etc/pamctl/tls.key",
		"":                    "''",
		"-rf":                 "./-rf",
		"- x":                 "'./- x'",
		"/a b":                "'/a b'",
		"/a'b":                `'/a'\''b'`,
		"/a\nb":               "'/a\nb'",
		"/ä":                  "'/ä'",
	} {
		if got := shq(in); got != want {
			t.Errorf("shq(%q) = %q, want %q", in, got, want)
		}
	}
}
