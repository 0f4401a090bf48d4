package cli

import (
	"strings"
	"testing"
)

// proxy:serve hands out every vaulted provider key, so a policy may give
// it only to workloads: its subjects must be pinned (subjects.issuers, or
// only workload issuers trusted) to issuers with workload: true. A policy
// that lets a person's identity match is refused at load (serve, reload,
// config check), naming the policy and the person issuers; scope patterns
// that cover proxy:serve (proxy:*) count too.
func TestPolicyRefusesProxyServeToPersons(t *testing.T) {
	both := "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl }\n  - { name: k8s, url: https://k8s.example.com, audience: pamctl, workload: true }\n"
	k8s := "issuers:\n  - { name: k8s, url: https://k8s.example.com, audience: pamctl, workload: true }\n"
	pol := func(subjects, scope string) string {
		return "policies:\n  - name: proxies\n    subjects: " + subjects + "\n    scopes: [\"" + scope + "\"]\n"
	}
	for _, c := range []struct {
		name, yaml string
		refused    bool
	}{
		{"group of persons", both + pol("{ groups: [ml] }", "proxy:serve"), true},
		{"unpinned users", both + pol("{ users: [system:serviceaccount:agents:pamctl-proxy] }", "proxy:serve"), true},
		{"pinned to a person issuer", both + pol("{ users: [alice], issuers: [corp] }", "proxy:serve"), true},
		{"pinned to both", both + pol("{ users: [p], issuers: [corp, k8s] }", "proxy:serve"), true},
		{"a glob covering it", both + pol("{ groups: [ml] }", "proxy:*"), true},
		{"pinned to the workload issuer", both + pol("{ users: [system:serviceaccount:agents:pamctl-proxy], issuers: [k8s] }", "proxy:serve"), false},
		{"only workload issuers trusted", k8s + pol("{ users: [system:serviceaccount:agents:pamctl-proxy] }", "proxy:serve"), false},
		{"persons, other scopes", both + pol("{ groups: [ml] }", "model:gpt-4o"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, c.yaml)
			if !c.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("a policy giving proxy:serve to persons was accepted")
			}
			for _, want := range []string{`policy "proxies"`, "proxy:serve", "provider key", "corp", "workload: true"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
