package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
)

// audit.sinks and audit.anchor decode strictly, validate every entry at
// once, and config check never prints a credential they carry.
func TestAuditSinksConfig(t *testing.T) {
	dir := t.TempDir()
	base := "data_dir: " + filepath.Join(dir, "data") + "\nmaster_key_file: " + filepath.Join(dir, "master.key") + "\n"
	// serve reads the ca_file and headers_file at start, and so does
	// config check: they exist.
	ca := tlstest.NewCA(t, "siem").WriteFile(t, dir, "ca")
	hec := filepath.Join(dir, "hec")
	if err := os.WriteFile(hec, []byte("Authorization: Splunk hecs3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := writeConfig(t, base+`audit:
  head_every: 50
  head_interval: 5s
  sinks:
    - { type: syslog, addr: "tcp+tls://siem.example.com:6514", ca_file: `+ca+` }
    - type: http
      url: "https://user:pa55word@collector.example.com/ingest?token=qu3rysecret"
      format: splunk_hec
      headers: { X-Source: inlinevalue }
      headers_file: `+hec+`
      timeout: 10s
    - { type: file, path: /var/log/pamctl/trail.jsonl, max_size: 1048576, max_files: 4 }
    - { type: http, url: "https://collectors.example.com/receiver/v1/http/ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR" }
  anchor: { url: "https://anchors.example.com/put/AnchorPathT0ken99?sig=anch0rsecret" }
`)
	r := runCLI(t, "config", "check", "--config", good)
	if r.code != ExitOK {
		t.Fatalf("valid sinks: %+v", r)
	}
	rj := runCLI(t, "config", "check", "--config", good, "-o", "json")
	// A token in the path too (black-box red team), as everywhere else.
	for _, secret := range []string{"pa55word", "qu3rysecret", "anch0rsecret", "inlinevalue", "ZaVnC4dhaV2ZK1p7", "AnchorPathT0ken99", "hecs3cret"} {
		if strings.Contains(r.out+r.err+rj.out+rj.err, secret) {
			t.Errorf("config check printed %q:\n%s\n%s", secret, r.out, rj.out)
		}
	}
	if !strings.Contains(r.out, "receiver/v1/http/…") {
		t.Errorf("config check does not show the sink's URL with its token hidden:\n%s", r.out)
	}
	for _, want := range []string{"head_every: 50", "head_interval: 5s", "timeout: 10s", "x-source: <hidden>", "headers_file: " + hec, "max_files: 4"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}

	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key in a sink", "audit:\n  sinks:\n    - { type: file, path: /x/y, max_file: 3 }\n",
			[]string{`line 5: audit.sinks[0]: unknown key "max_file" (did you mean "max_files"?)`}},
		{"unknown key in the anchor", "audit:\n  anchor: { fil: /x }\n", []string{`line 4: audit.anchor: unknown key "fil"`}},
		{"timeout without unit", "audit:\n  sinks:\n    - { type: http, url: 'https://c/x', timeout: 30 }\n", []string{"timeout: 30 has no unit"}},
		{"head_interval too short", "audit:\n  head_interval: 10ms\n", []string{"audit.head_interval: 10ms is below the minimum 1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "config", "check", "--config", writeConfig(t, base+tc.body))
			if r.code != ExitUsage {
				t.Fatalf("exit %d: %s", r.code, r.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.err, w) {
					t.Errorf("error lacks %q:\n%s", w, r.err)
				}
			}
		})
	}

	// Every problem at once.
	bad := writeConfig(t, base+`audit:
  head_every: 0
  sinks:
    - { type: syslog, addr: "siem:514", path: /x }
    - { type: http, url: "ftp://c/x", format: xml, headers: { Authorization: "Bearer inl1ne" } }
    - { type: file, path: relative.jsonl, max_files: 1, max_size: 10 }
    - { type: kafka }
    - { type: file, path: /var/log/a.jsonl }
    - { type: file, path: /var/log/a.jsonl }
  anchor: { file: /a, url: "https://b/" }
`)
	r = runCLI(t, "config", "check", "--config", bad)
	if r.code != ExitUsage {
		t.Fatalf("bad sinks accepted: %+v", r)
	}
	for _, w := range []string{
		"audit.head_every: 0 must be between 1 and 1000000",
		`audit.sinks[0] (syslog): addr "siem:514" must be tcp+tls://`,
		"path does not apply to a syslog sink",
		`url "ftp://c/x" is not an http(s) URL`,
		`format "xml" must be jsonl or splunk_hec`,
		"authorization looks like a credential: put it in headers_file",
		`path "relative.jsonl" must be an absolute path`,
		"max_files 1 must be at least 2",
		"max_size 10 must be at least 65536",
		`type "kafka" must be syslog, http or file`,
		"audit.sinks[5]: same name or destination as audit.sinks[4]",
		"audit.anchor: set one of file, url and url_file",
	} {
		if !strings.Contains(r.err, w) {
			t.Errorf("error lacks %q:\n%s", w, r.err)
		}
	}
	if strings.Contains(r.err, "inl1ne") {
		t.Errorf("the refused header's value was printed:\n%s", r.err)
	}
}
