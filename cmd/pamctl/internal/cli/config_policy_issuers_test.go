package cli

import (
	"strings"
	"testing"
)

// With several trusted issuers, a policy that names users or groups
// without issuers: admits the same name from any of them: config check
// (and serve, in its log) says so, per list, and stays quiet once the
// list is pinned or when only one issuer is trusted. (The policy grants a
// model: proxy:serve to persons is an error, see
// TestPolicyRefusesProxyServeToPersons.)
func TestPolicyIssuerWarnings(t *testing.T) {
	two := "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl }\n  - { name: k8s, url: https://k8s.example.com, audience: pamctl, workload: true }\n"
	one := "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl }\n"
	pol := func(subjects, approvers string) string {
		return "policies:\n  - name: proxies\n    subjects: " + subjects + "\n    scopes: [\"model:gpt-4o\"]\n    approval: { required: true, approvers: " + approvers + " }\n"
	}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"unpinned users and approvers", two + pol("{ users: [system:serviceaccount:agents:pamctl-proxy] }", "{ groups: [security] }"),
			[]string{`policy "proxies": subjects names users or groups without issuers:`, `policy "proxies": approval.approvers names users or groups without issuers:`}},
		{"pinned", two + pol("{ users: [system:serviceaccount:agents:pamctl-proxy], issuers: [k8s] }", "{ groups: [security], issuers: [corp] }"), nil},
		{"one issuer", one + pol("{ users: [alice] }", "{ groups: [security] }"), nil},
		{"issuers only", two + pol("{ issuers: [k8s] }", "{ groups: [security], issuers: [corp] }"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadYAML(t, c.yaml)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.PolicyIssuerWarnings()
			if len(got) != len(c.want) {
				t.Fatalf("warnings %q, want %d", got, len(c.want))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) || !strings.Contains(got[i], "of the 2 trusted issuers") {
					t.Errorf("warning %q, want %q", got[i], w)
				}
			}
		})
	}
}
