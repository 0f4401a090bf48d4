package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// urlFileToken is the token a url_file's URL carries: never printed.
const urlFileToken = "Tok3nInThePath0123456789abcdef"

// `config check` judges an http sink's and the anchor's url_file with the
// function serve's start uses (auditsink.NewTarget, NewAnchorTarget), so a
// file serve would refuse fails the check too: not one http(s) URL on one
// line, missing, not a regular file. The error names the setting and the
// file, never the URL (it holds a token). A good file passes and its URL
// is never shown either (black-box red team: config check passed a
// url_file serve refused).
func TestConfigCheckJudgesAuditURLFiles(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
	write := func(t *testing.T, content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "collector-url")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, where := range []struct {
		name   string
		body   func(file string) string
		prefix string
	}{
		{"sink", func(f string) string { return "audit:\n  sinks:\n    - { type: http, url_file: '" + f + "' }\n" }, "audit.sinks[0] (http): "},
		{"anchor", func(f string) string { return "audit:\n  anchor: { url_file: '" + f + "' }\n" }, "audit.anchor: "},
	} {
		t.Run(where.name, func(t *testing.T) {
			good := write(t, "\n  https://collector.example.com/receiver/v1/http/"+urlFileToken+"  \n")
			r := runCLI(t, "config", "check", "--config", writeConfig(t, base+where.body(good)))
			if r.code != ExitOK {
				t.Fatalf("a good url_file: exit %d: %s", r.code, r.err)
			}
			if strings.Contains(r.out+r.err, urlFileToken) || strings.Contains(r.out+r.err, "receiver") {
				t.Errorf("config check shows the url_file's URL:\n%s%s", r.out, r.err)
			}
			for _, tc := range []struct {
				name string
				path func(t *testing.T) string
				want string
			}{
				{"empty", func(t *testing.T) string { return write(t, "\n \n") }, "must hold one URL on one line"},
				{"two lines", func(t *testing.T) string {
					return write(t, "https://a.example.com/"+urlFileToken+"\nhttps://b.example.com/"+urlFileToken+"\n")
				}, "must hold one URL on one line"},
				{"a space inside", func(t *testing.T) string { return write(t, "https://a.example.com/ "+urlFileToken) }, "must hold one URL on one line"},
				{"bad scheme", func(t *testing.T) string { return write(t, "ftp://a.example.com/"+urlFileToken) }, "does not hold an http(s) URL"},
				{"javascript", func(t *testing.T) string { return write(t, "javascript:"+urlFileToken) }, "does not hold an http(s) URL"},
				{"relative path", func(t *testing.T) string { return write(t, "/receiver/v1/http/"+urlFileToken) }, "does not hold an http(s) URL"},
				{"no scheme", func(t *testing.T) string { return write(t, "collector.example.com/"+urlFileToken) }, "does not hold an http(s) URL"},
				{"no host", func(t *testing.T) string { return write(t, "https:///"+urlFileToken) }, "does not hold an http(s) URL"},
				{"control character", func(t *testing.T) string { return write(t, "https://a.example.com/\x01"+urlFileToken) }, "does not hold an http(s) URL"},
				{"DEL", func(t *testing.T) string { return write(t, "https://a.example.com/"+urlFileToken+"\x7f") }, "does not hold an http(s) URL"},
				{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "no such file"},
				{"a directory", func(t *testing.T) string { return t.TempDir() }, "point the setting at a regular file"},
				// Refused by its mode (CheckNamedFiles), reported once.
				{"world-writable", func(t *testing.T) string {
					p := write(t, "https://collector.example.com/"+urlFileToken)
					if err := os.Chmod(p, 0o606); err != nil {
						t.Fatal(err)
					}
					return p
				}, "chmod o-w"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					file := tc.path(t)
					r := runCLI(t, "config", "check", "--config", writeConfig(t, base+where.body(file)))
					if r.code != ExitUsage {
						t.Fatalf("exit %d, want %d (serve refuses this url_file):\n%s%s", r.code, ExitUsage, r.out, r.err)
					}
					if (!strings.Contains(r.err, where.prefix) && tc.name != "world-writable") || !strings.Contains(r.err, file) || !strings.Contains(r.err, tc.want) {
						t.Errorf("error does not name %q, the file and %q:\n%s", where.prefix, tc.want, r.err)
					}
					if strings.Contains(r.out+r.err, urlFileToken) {
						t.Errorf("config check printed the url_file's URL:\n%s%s", r.out, r.err)
					}
					lines := 0
					for l := range strings.Lines(r.err) {
						if strings.Contains(l, file) {
							lines++
						}
					}
					if lines != 1 {
						t.Errorf("the file is reported on %d lines, want one:\n%s", lines, r.err)
					}
				})
			}
		})
	}
}

// The other files serve's start reads for an audit sink or the anchor
// (headers_file, a syslog's or an http target's ca_file) are read by
// `config check` too: missing or holding nothing usable fails the check,
// naming the setting and the file, never quoting a header's value. So is
// an anchor file serve would refuse (its directory missing, a symlink,
// a way another local user may write).
func TestConfigCheckJudgesAuditSinkFiles(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
	write := func(t *testing.T, content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }
	for _, tc := range []struct {
		name   string
		body   func(f string) string
		file   func(t *testing.T) string
		prefix string
		want   string
	}{
		{"sink headers_file missing", func(f string) string {
			return "audit:\n  sinks:\n    - { type: http, url: 'https://c.example.com/x', headers_file: '" + f + "' }\n"
		}, missing, "audit.sinks[0] (http): ", "no such file"},
		{"sink headers_file not headers", func(f string) string {
			return "audit:\n  sinks:\n    - { type: http, url: 'https://c.example.com/x', headers_file: '" + f + "' }\n"
		}, func(t *testing.T) string { return write(t, "Splunk S3cretHeaderValue\n") }, "audit.sinks[0] (http): ", "line 1: not a \"Name: value\" line"},
		{"sink ca_file missing", func(f string) string {
			return "audit:\n  sinks:\n    - { type: http, url: 'https://c.example.com/x', ca_file: '" + f + "' }\n"
		}, missing, "audit.sinks[0] (http): ", "no such file"},
		{"syslog ca_file without PEM", func(f string) string {
			return "audit:\n  sinks:\n    - { type: syslog, addr: 'tcp+tls://siem.example.com:6514', ca_file: '" + f + "' }\n"
		}, func(t *testing.T) string { return write(t, "not a certificate\n") }, "audit.sinks[0] (syslog): ", "holds no PEM certificate"},
		{"anchor headers_file missing", func(f string) string {
			return "audit:\n  anchor: { url: 'https://a.example.com/x', headers_file: '" + f + "' }\n"
		}, missing, "audit.anchor: ", "no such file"},
		{"anchor file in a missing directory", func(f string) string {
			return "audit:\n  anchor: { file: '" + f + "' }\n"
		}, func(t *testing.T) string { return filepath.Join(t.TempDir(), "not-mounted", "heads.jsonl") }, "audit.anchor: ", "its directory does not exist"},
		{"anchor file a symlink", func(f string) string {
			return "audit:\n  anchor: { file: '" + f + "' }\n"
		}, func(t *testing.T) string {
			d := t.TempDir()
			p := filepath.Join(d, "heads.jsonl")
			if err := os.Symlink(filepath.Join(d, "elsewhere"), p); err != nil {
				t.Skipf("no symlink here: %v", err)
			}
			return p
		}, "audit.anchor: ", "is a symlink"},
		{"anchor file in a directory every local user may write", func(f string) string {
			return "audit:\n  anchor: { file: '" + f + "' }\n"
		}, func(t *testing.T) string {
			if runtime.GOOS == "windows" {
				t.Skip("modes need Unix here")
			}
			d := filepath.Join(t.TempDir(), "open")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "heads.jsonl")
		}, "audit.anchor: ", "writable by every local user"},
		{"anchor ca_file without PEM", func(f string) string {
			return "audit:\n  anchor: { url: 'https://a.example.com/x', ca_file: '" + f + "' }\n"
		}, func(t *testing.T) string { return write(t, "x") }, "audit.anchor: ", "holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file(t)
			r := runCLI(t, "config", "check", "--config", writeConfig(t, base+tc.body(file)))
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d (serve refuses this file):\n%s%s", r.code, ExitUsage, r.out, r.err)
			}
			if !strings.Contains(r.err, tc.prefix) || !strings.Contains(r.err, file) || !strings.Contains(r.err, tc.want) {
				t.Errorf("error does not name %q, the file and %q:\n%s", tc.prefix, tc.want, r.err)
			}
			if strings.Contains(r.out+r.err, "S3cretHeaderValue") {
				t.Errorf("config check printed a header's value:\n%s%s", r.out, r.err)
			}
		})
	}
}

// What config check refuses is what serve's start refuses: the same
// function judges both (auditsink.CheckTargets builds the targets
// auditsink.Start builds).
func TestAuditCheckTargetsIsWhatStartBuilds(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "u")
	if err := os.WriteFile(bad, []byte("ftp://x/"+urlFileToken), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := auditsink.SinkConfig{Type: "http", URLFile: bad}
	_, startErr := auditsink.NewTarget(sink)
	errs := auditsink.CheckTargets([]auditsink.SinkConfig{sink}, auditsink.AnchorConfig{}, nil)
	if startErr == nil || len(errs) != 1 || !strings.HasSuffix(errs[0].Error(), startErr.Error()) {
		t.Fatalf("start: %v; check: %v", startErr, errs)
	}
}

// `config check` reads a Slack or Teams webhook_url_file as a delivery
// does and judges its URL (h3 noticed it did not: the first notification
// failed instead), naming the setting and file, never the URL.
func TestConfigCheckJudgesWebhookURLFiles(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
	const secret = "T0/B0/WebhookSecret0123456789"
	for _, ch := range []string{"slack", "teams"} {
		for _, tc := range []struct {
			name, content, want string
		}{
			{"good", "https://hooks.example.com/services/" + secret + "\n", ""},
			{"plaintext", "http://hooks.example.com/services/" + secret + "\n", "webhook_url_file"},
			{"no URL", "hooks.example.com/services/" + secret + "\n", "webhook_url_file"},
			{"empty", "\n", "webhook_url_file"},
		} {
			t.Run(ch+"/"+tc.name, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "hook")
				if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				r := runCLI(t, "config", "check", "--config", writeConfig(t, base+"notify:\n  "+ch+": { webhook_url_file: '"+p+"' }\n"))
				if strings.Contains(r.out+r.err, "WebhookSecret") {
					t.Errorf("config check shows the webhook URL:\n%s%s", r.out, r.err)
				}
				if tc.want == "" {
					if r.code != ExitOK {
						t.Fatalf("a good webhook_url_file: exit %d: %s", r.code, r.err)
					}
					return
				}
				if r.code != ExitUsage || !strings.Contains(r.err, "notify."+ch+"."+tc.want) || !strings.Contains(r.err, p) {
					t.Fatalf("exit %d, want %d naming notify.%s.%s and the file:\n%s", r.code, ExitUsage, ch, tc.want, r.err)
				}
			})
		}
	}
}
