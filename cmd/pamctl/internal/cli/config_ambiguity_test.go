package cli

import (
	"strings"
	"testing"
)

// A key spelled in another case than documented is refused with its line
// and the right spelling: the decoder folds case, so "Rules: []" after
// "rules: [...]" used to empty the rules, "Masking:" to turn masking off
// and "Action: redact" to override "action: deny", with config check
// exiting 0.
func TestCaseVariantKeysAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"Rules after rules empties them",
			"rules:\n  - { name: r, pattern: secret, action: deny }\nRules: []\n",
			[]string{`line 3: unknown key "Rules": keys are lower case (did you mean "rules"?)`, `line 3: duplicate key "Rules" differs only in case from "rules" on line 1`}},
		{"Masking alone turns masking off",
			"Masking: {response: {default: off}}\n",
			[]string{`line 1: unknown key "Masking": keys are lower case (did you mean "masking"?)`}},
		{"Action overrides action",
			"rules:\n  - name: r\n    pattern: secret\n    action: deny\n    Action: redact\n",
			[]string{`line 5: rules[0]: unknown key "Action": keys are lower case (did you mean "action"?)`, `line 5: rules[0]: duplicate key "Action" differs only in case from "action" on line 4`}},
		{"nested struct", "proxy:\n  ADDR: 127.0.0.1:1\n",
			[]string{`line 2: proxy: unknown key "ADDR": keys are lower case (did you mean "addr"?)`}},
		{"inside a list entry mapping", "policies:\n  - name: p\n    Subjects: { groups: [ml] }\n    scopes: [\"model:*\"]\n",
			[]string{`line 3: policies[0]: unknown key "Subjects": keys are lower case (did you mean "subjects"?)`}},
		{"masking direction default", "masking:\n  prompt: { Default: off }\n",
			[]string{`line 2: masking.prompt: unknown key "Default": keys are lower case (did you mean "default"?)`}},
		{"old name in odd case", "Session_TTL: 1h\n",
			[]string{`line 1: unknown key "Session_TTL": keys are lower case (did you mean "session_ttl"?)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, tc.body)
			_, err := LoadConfig(file, nil)
			if err == nil {
				t.Fatal("loaded an ambiguous config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if r := runCLI(t, "config", "check", "--config", file); r.code != ExitUsage || !strings.Contains(r.err, tc.want[0]) {
				t.Fatalf("config check: %+v", r)
			}
		})
	}
}

// A key written twice in one mapping is refused, exactly or in another
// case, at any depth and among masking detectors; a key overriding one
// brought in by a YAML merge key is not a duplicate.
func TestDuplicateKeysAreRefused(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"top level", "rules: []\nrules: []\n", `line 2: duplicate key "rules" repeats "rules" on line 1`},
		{"list entry", "rules:\n  - name: r\n    pattern: x\n    action: deny\n    action: redact\n", `line 5: rules[0]: duplicate key "action" repeats "action" on line 4`},
		{"detector in two cases", "masking:\n  prompt:\n    EMAIL: redact\n    email: off\n", `line 4: masking.prompt: duplicate key "email" differs only in case from "EMAIL" on line 3`},
		{"nested", "audit:\n  retention: 30d\n  retention: 0s\n", `line 3: audit: duplicate key "retention" repeats "retention" on line 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := LoadConfig(writeConfig(t, "upstreams:\n  - &up { name: a, url: 'https://x.example/v1', key: a }\n  - { <<: *up, name: b }\n"), nil)
	if err != nil || len(cfg.Upstreams) != 2 || cfg.Upstreams[1].Name != "b" {
		t.Fatalf("merge override refused: %v", err)
	}
}

// Only the first document of a YAML stream is read, so a second one is
// refused rather than its rules silently doing nothing.
func TestSecondYAMLDocumentIsRefused(t *testing.T) {
	for _, body := range []string{
		"server: http://127.0.0.1:8700\n---\nrules:\n  - { name: r, pattern: secret, action: deny }\n",
		"rules: []\n---\n",
		"---\nrules: []\n---\nrules: []\n",
	} {
		file := writeConfig(t, body)
		_, err := LoadConfig(file, nil)
		if err == nil || !strings.Contains(err.Error(), "a second YAML document (after ---) is not read") || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: %v", body, err)
		}
		if r := runCLI(t, "config", "check", "--config", file); r.code != ExitUsage {
			t.Errorf("config check %q: %+v", body, r)
		}
	}
	for _, body := range []string{"---\nrules: []\n", "rules: []\n...\n", ""} {
		if _, err := LoadConfig(writeConfig(t, body), nil); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}

// A rule pattern that can only or also match zero characters is refused
// by config check, not just "" matchers: \b never matches "" yet matches
// every prompt with a word in it.
func TestZeroWidthRulePatternRefusedByConfigCheck(t *testing.T) {
	for _, p := range []string{`\b`, `^`, `(?:)`, `a*`, `x|`} {
		file := writeConfig(t, "rules:\n  - { name: r, pattern: '"+p+"', action: redact }\n")
		if r := runCLI(t, "config", "check", "--config", file); r.code != ExitUsage || !strings.Contains(r.err, "can match the empty string") {
			t.Errorf("pattern %q: %+v", p, r)
		}
	}
}

// PAMCTL_* variables that would silently be ignored are refused: a name
// that differs from one pamctl reads only in case, and one for a key that
// can only be set in the file. Other PAMCTL_* names (PAMCTL_DEBUG, …) are
// not configuration and are left alone.
func TestEnvThatWouldBeIgnoredIsRefused(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"pamctl_proxy_addr", "environment variable pamctl_proxy_addr is not read: names are case-sensitive; write PAMCTL_PROXY_ADDR"},
		{"PAMCTL_proxy_addr", "write PAMCTL_PROXY_ADDR"},
		{"Pamctl_Audit_Retention", "write PAMCTL_AUDIT_RETENTION"},
		{"pamctl_config", "write PAMCTL_CONFIG"},
		{"pamctl_master_key", "write PAMCTL_MASTER_KEY"},
		{"pamctl_rules", "write PAMCTL_RULES"},
		{"PAMCTL_RULES", "environment variable PAMCTL_RULES is not read: rules can only be set in the config file"},
		{"PAMCTL_MASKING_PROMPT_CUSTOM", "masking.prompt.custom can only be set in the config file"},
		{"PAMCTL_POLICIES", "policies can only be set in the config file"},
		{"PAMCTL_MASKING_PROMPT_EMAIL", "masking.prompt.EMAIL can only be set in the config file"},
		{"pamctl_masking_response_default", "write PAMCTL_MASKING_RESPONSE_DEFAULT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, "")
			t.Setenv(tc.name, "x")
			_, err := LoadConfig(file, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	file := writeConfig(t, "")
	t.Setenv("PAMCTL_DEBUG", "1")
	t.Setenv("pamctl_debug", "1")
	t.Setenv("PAMCTL_PROXY_ADDR", "127.0.0.1:9999")
	t.Setenv("PAMCTL_MASKING_PROMPT_DEFAULT", "off")
	cfg, err := LoadConfig(file, nil)
	if err != nil || cfg.Proxy.Addr != "127.0.0.1:9999" {
		t.Fatalf("%v %+v", err, cfg)
	}
}
