package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("PAMCTL_CONFIG", "")
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Every unknown key is an error naming the key and its line, wherever it
// sits: at the top, in a nested mapping, inside each kind of list entry,
// and among masking detectors.
func TestUnknownKeysAreErrorsWithLines(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the error
	}{
		{"top level typo silently disabled every rule", "rule:\n  - { name: x, pattern: a, action: deny }\n",
			[]string{`line 1: unknown key "rule" (did you mean "rules"?)`}},
		{"nested mapping", "proxy:\n  addr: 127.0.0.1:1\n  max_bdy: 10\n",
			[]string{`line 3: proxy: unknown key "max_bdy" (did you mean "max_body"?)`}},
		{"issuers list", "issuers:\n  - name: corp\n    url: https://idp.example.com\n    client_id: pamctl\n    group_claim: g\n",
			[]string{`line 5: issuers[0]: unknown key "group_claim" (did you mean "groups_claim"?)`}},
		{"upstreams list", "upstreams:\n  - name: openai\n    url: https://api.openai.com/v1\n    key: openai\n  - name: b\n    url: https://b.example/v1\n    key: b\n    timout: 1m\n",
			[]string{`line 8: upstreams[1]: unknown key "timout" (did you mean "timeout"?)`}},
		{"policies list, maxttl meant 0", "policies:\n  - name: p\n    subjects: { groups: [ml] }\n    scopes: [\"model:*\"]\n    maxttl: 1h\n",
			[]string{`line 5: policies[0]: unknown key "maxttl" (did you mean "max_ttl"?)`}},
		{"policy nested mapping", "policies:\n  - name: p\n    subjects: { group: [ml] }\n    scopes: [\"model:*\"]\n",
			[]string{`line 3: policies[0].subjects: unknown key "group" (did you mean "groups"?)`}},
		{"policy approval", "policies:\n  - name: p\n    subjects: { groups: [ml] }\n    scopes: [\"model:*\"]\n    approval:\n      required: true\n      approver: { groups: [sec] }\n",
			[]string{`line 7: policies[0].approval: unknown key "approver" (did you mean "approvers"?)`}},
		{"rules list", "rules:\n  - name: r\n    pattern: x\n    acton: deny\n",
			[]string{`line 4: rules[0]: unknown key "acton" (did you mean "action"?)`}},
		{"masking direction", "masking:\n  reponse: { default: mask }\n",
			[]string{`line 2: masking: unknown key "reponse" (did you mean "response"?)`}},
		{"masking detector", "masking:\n  prompt:\n    default: off\n    EMIAL: redact\n",
			[]string{`line 4: masking.prompt: unknown key "EMIAL"`}},
		{"masking custom detector entry", "masking:\n  response:\n    custom:\n      - { name: EMP, patern: 'EMP-\\d+' }\n",
			[]string{`line 4: masking.response.custom[0]: unknown key "patern" (did you mean "pattern"?)`}},
		{"several at once", "audit:\n  retension: 90d\nnotify:\n  web_hook: https://x\n",
			[]string{`line 2: audit: unknown key "retension"`, `line 4: notify: unknown key "web_hook"`}},
		{"wrong shape", "rules: { name: r }\n", []string{`line 1: rules: expected a list, got a mapping`}},
		{"anchors and merge keys are followed", "base: &b\n  nme: x\n", []string{`line 1: unknown key "base"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.body), nil)
			if err == nil {
				t.Fatal("loaded a config with unknown keys")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// Custom detector names become valid detector keys; detector names in any
// case and YAML merge keys are accepted.
func TestKnownKeysLoad(t *testing.T) {
	file := writeConfig(t, `
defaults: &up { url: "https://api.openai.com/v1", key: openai }
`)
	if _, err := LoadConfig(file, nil); err == nil || !strings.Contains(err.Error(), `unknown key "defaults"`) {
		t.Fatalf("an unknown anchor holder must be refused: %v", err)
	}
	file = writeConfig(t, `
server: http://127.0.0.1:8700
upstreams:
  - &up { name: openai, url: "https://api.openai.com/v1", key: openai }
  - { <<: *up, name: second }
masking:
  prompt:
    default: off
    email: redact
    EMP_ID: mask
    custom: [{ name: emp_id, pattern: 'EMP-\d{6}' }]
`)
	cfg, err := LoadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Upstreams) != 2 || cfg.Upstreams[1].URL != "https://api.openai.com/v1" {
		t.Fatalf("merge key not applied: %+v", cfg.Upstreams)
	}
}

// Every duration key refuses a bare number, from the file and from the
// environment, and values below its minimum.
func TestDurationsRejectBareNumbersAndTinyValues(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"audit: { retention: 90 }\n", "line 1: audit.retention: 90 has no unit"},
		{"session_ttl: 3600\n", "line 1: session_ttl: 3600 has no unit"},
		{"proxy: { timeout: 1.5 }\n", "line 1: proxy.timeout: 1.5 has no unit"},
		{"upstreams: [{ name: o, url: 'https://x/v1', key: o, timeout: 30 }]\n", "line 1: upstreams[0].timeout: 30 has no unit"},
		{"policies: [{ name: p, subjects: {groups: [a]}, scopes: ['model:*'], max_ttl: 60 }]\n", "line 1: policies[0].max_ttl: 60 has no unit"},
		{"audit: { retention: 0 }\n", "0 has no unit"},
		{"audit: { retention: '90' }\n", "90 has no unit"},
	} {
		_, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{"audit: { retention: 90s }\n", "audit.retention: 1m30s is below the minimum 1h (or 0s: keep events forever)"},
		{"session_ttl: 30s\n", "session_ttl: 30s is below the minimum 5m"},
		{"session_ttl: 9h\n", "session_ttl: 9h is above the maximum 8h"},
		{"proxy: { hold_timeout: 10ms }\n", "proxy.hold_timeout: 10ms is below the minimum 1s"},
		{"upstreams: [{ name: o, url: 'https://x/v1', key: o, timeout: 5ms }]\n", "upstreams[0].timeout: 5ms is below the minimum 1s"},
		{"policies: [{ name: p, subjects: {groups: [a]}, scopes: ['model:*'], pending_ttl: 5s }]\n", "policies[0].pending_ttl: 5s is below the minimum 1m"},
		{"policies: [{ name: p, subjects: {groups: [a]}, scopes: ['model:*'], max_ttl: 5s }]\n", "max_ttl: is shorter than the minimum 1m"},
	} {
		cfg, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	cfg, err := LoadConfig(writeConfig(t, "audit: { retention: 0s }\nupstreams: [{ name: o, url: 'https://x/v1', key: o, timeout: 0s }]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("0s where 0 has a meaning: %v", err)
	}
	writeConfig(t, "")
	t.Setenv("PAMCTL_AUDIT_RETENTION", "90")
	if _, err := LoadConfig("", nil); err == nil || !strings.Contains(err.Error(), "90 has no unit") {
		t.Fatalf("PAMCTL_AUDIT_RETENTION=90: %v", err)
	}
}

// durationBounds names every duration key of Config, so a new one cannot
// arrive without a decided minimum.
func TestEveryDurationKeyHasBounds(t *testing.T) {
	keys := durationKeys()
	if len(keys) < 5 {
		t.Fatalf("found only %v", keys)
	}
	for _, k := range keys {
		if _, ok := durationBounds[k]; !ok {
			t.Errorf("duration key %s has no entry in durationBounds: decide its minimum (and document it)", k)
		}
	}
	for k := range durationBounds {
		if !slices.Contains(keys, k) {
			t.Errorf("durationBounds names %s, which is not a duration key of Config", k)
		}
	}
}

// Every single-valued key can be set from PAMCTL_*: the list is derived
// from Config, matches the table in docs/configuration.md both ways, and
// each variable really changes its key.
func TestEveryKeyFromEnvironment(t *testing.T) {
	keys := envKeys()
	doc, err := os.ReadFile("../../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\| `(PAMCTL_[A-Z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
		if EnvName(m[1]) != m[2] {
			t.Errorf("docs: %s is set by %s, not %s", m[1], EnvName(m[1]), m[2])
		}
	}
	for _, k := range keys {
		if !documented[k] {
			t.Errorf("docs/configuration.md does not list %s (%s) in the environment table", k, EnvName(k))
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("docs/configuration.md lists %s, which is not a single-valued key", k)
	}

	for _, k := range keys {
		t.Run(k, func(t *testing.T) {
			writeConfig(t, "")
			val, want := sampleValue(t, k)
			t.Setenv(EnvName(k), val)
			cfg, err := LoadConfig("", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := lookupKey(t, cfg, k); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s=%s gave %s = %#v, want %#v", EnvName(k), val, k, got, want)
			}
		})
	}
}

// sampleValue is a valid, non-default value for key k, by its type, and
// the value it must decode to.
func sampleValue(t *testing.T, k string) (string, any) {
	switch lookupKey(t, &Config{}, k).(type) {
	case time.Duration:
		return "3h", 3 * time.Hour
	case bool:
		return "true", true
	case int:
		return "4242", 4242
	case int64:
		return "4242", int64(4242)
	case float64:
		return "0.25", 0.25
	case []string:
		return "a.example.test,b.example.test", []string{"a.example.test", "b.example.test"}
	}
	switch {
	case strings.HasSuffix(k, "addr"):
		return "127.0.0.1:9999", "127.0.0.1:9999"
	case strings.Contains(k, "url") || k == "server" || strings.Contains(k, "webhook"):
		return "https://example.test/x", "https://example.test/x"
	}
	s := "sample-" + strings.ReplaceAll(k, ".", "-")
	return s, s
}

func lookupKey(t *testing.T, cfg *Config, k string) any {
	t.Helper()
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(k, ".") {
		v = reflect.Indirect(fieldByKey(v, part))
		if !v.IsValid() {
			t.Fatalf("no key %s", k)
		}
	}
	if v.Kind() == reflect.String {
		return v.String() // mask.Action and friends compare as strings
	}
	return v.Interface()
}

// runCLI runs the root command with fake streams, as Main would.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	root := NewCmdRoot(NewFactory(ios))
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	code := ExitOK
	if err != nil {
		code = exitCodeOf(err)
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return result{out: out.String(), err: errOut.String(), code: code}
}

func TestConfigCheckFlagsReachRunF(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	f := NewFactory(ios)
	var got *ConfigCheckOptions
	cmd := NewCmdConfigCheck(f, func(_ *cobra.Command, o *ConfigCheckOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"-o", "json"})
	if err := cmd.Execute(); err != nil || got == nil || got.Output != "json" {
		t.Fatalf("runF: %v %+v", err, got)
	}
	cmd = NewCmdConfigCheck(f, func(*cobra.Command, *ConfigCheckOptions) error { t.Fatal("runF called"); return nil })
	cmd.SetArgs([]string{"-o", "yaml"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); exitCodeOf(err) != ExitUsage {
		t.Fatalf("-o yaml: %v", err)
	}
}

// config check prints the effective config with secrets hidden and exits
// 0; a broken config exits 2 with every problem listed.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, `
data_dir: `+filepath.Join(dir, "data")+`
master_key_file: `+filepath.Join(dir, "master.key")+`
notify: { webhook: "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX" }
upstreams:
  - { name: openai, url: "https://user:pa55word@api.example.com/v1?api-key=sekrit", key: openai }
audit: { retention: 30d }
`)
	r := runCLI(t, "config", "check", "--config", file)
	if r.code != ExitOK {
		t.Fatalf("valid config: %+v", r)
	}
	for _, secret := range []string{"XXXXsecretXXXX", "T000", "pa55word", "sekrit"} {
		if strings.Contains(r.out+r.err, secret) {
			t.Fatalf("config check printed the secret %q:\n%s", secret, r.out)
		}
	}
	for _, want := range []string{"webhook: https://hooks.slack.com/<hidden>", "retention: 30d", "url: https://user:<hidden>@api.example.com/v1?<hidden>", "data_dir: " + filepath.Join(dir, "data")} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	r = runCLI(t, "config", "check", "--config", file, "-o", "json")
	var v map[string]any
	if err := json.Unmarshal([]byte(r.out), &v); err != nil || r.code != 0 {
		t.Fatalf("-o json: %v %+v", err, r)
	}
	if v["notify"].(map[string]any)["webhook"] != "https://hooks.slack.com/<hidden>" || v["sessions"].(map[string]any)["max_lifetime"] != "8h" {
		t.Fatalf("-o json: %v", v)
	}

	bad := writeConfig(t, "rule: []\naudit: { retention: 90 }\n")
	r = runCLI(t, "config", "check", "--config", bad)
	if r.code != ExitUsage || !strings.Contains(r.err, `line 1: unknown key "rule"`) || !strings.Contains(r.err, "line 2: audit.retention: 90 has no unit") {
		t.Fatalf("bad config: %+v", r)
	}
	bad = writeConfig(t, "proxy: { max_body: -1 }\nsession_ttl: 1m\n")
	r = runCLI(t, "config", "check", "--config", bad)
	if r.code != ExitUsage || !strings.Contains(r.err, "proxy.max_body must be positive") || !strings.Contains(r.err, "session_ttl: 1m is below") {
		t.Fatalf("invalid values: %+v", r)
	}
}

// A data dir, database or master key file that others can read is refused
// with the chmod that fixes it, by serve, by config check and by the admin
// commands that open the data dir.
func TestPrivatePathsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(dir string)
		want string
	}{
		{"data dir 0755", func(dir string) { os.Chmod(filepath.Join(dir, "data"), 0o755) }, "chmod 700 " + "DIR/data"},
		{"master key 0644", func(dir string) { os.Chmod(filepath.Join(dir, "master.key"), 0o644) }, "chmod 600 DIR/master.key"},
		{"database 0640", func(dir string) { os.Chmod(filepath.Join(dir, "data", "pamctl.db"), 0o640) }, "chmod 600 DIR/data/pamctl.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "data"), 0o700)
			os.WriteFile(filepath.Join(dir, "data", "pamctl.db"), nil, 0o600)
			os.WriteFile(filepath.Join(dir, "master.key"), []byte("x"), 0o600)
			tc.prep(dir)
			file := writeConfig(t, "data_dir: "+filepath.Join(dir, "data")+"\nmaster_key_file: "+filepath.Join(dir, "master.key")+"\n")
			t.Setenv("PAMCTL_MASTER_KEY", "")
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			for _, args := range [][]string{{"config", "check"}, {"serve", "--broker-addr", "127.0.0.1:0", "--proxy-addr", "127.0.0.1:0"}, {"vault", "ls"}} {
				r := runCLI(t, append(args, "--config", file)...)
				if r.code == ExitOK || !strings.Contains(r.err, want) || !strings.Contains(r.err, "group or others") {
					t.Errorf("%v: %+v, want the error to say %q", args, r, want)
				}
			}
			cfg, err := LoadConfig(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewApp(t.Context(), cfg, AppOptions{}); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("NewApp: %v", err)
			}
		})
	}
}

// The annotated example in docs/configuration.md is a valid config: every
// key it shows is known and every value passes validation.
func TestConfigurationDocExampleLoads(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(string(doc))
	if m == nil {
		t.Fatal("no yaml example")
	}
	cfg, err := LoadConfig(writeConfig(t, m[1]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"policies", "rules", "masking", "audit"} {
		if !cfg.Sets(k) {
			t.Errorf("example does not set %s", k)
		}
	}
}
