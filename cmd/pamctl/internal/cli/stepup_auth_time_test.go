package cli

import (
	"strings"
	"testing"
)

// issuers[].step_up_without_auth_time is accepted, shown by config check,
// and warned about while it is set (serve logs the same warning).
func TestConfigCheckWarnsStepUpWithoutAuthTime(t *testing.T) {
	const base = "issuers:\n  - { name: corp, url: https://idp.example.com, client_id: pamctl"
	r := runCLI(t, "config", "check", "--config", writeConfig(t, base+", step_up_without_auth_time: true }\n"))
	if r.code != ExitOK || !strings.Contains(r.err, `issuer "corp": step_up_without_auth_time is set`) || !strings.Contains(r.out, "step_up_without_auth_time: true") {
		t.Fatalf("with the opt-out: %+v", r)
	}
	r = runCLI(t, "config", "check", "--config", writeConfig(t, base+" }\n"))
	if r.code != ExitOK || strings.Contains(r.err, "step_up_without_auth_time") {
		t.Fatalf("without the opt-out: %+v", r)
	}
}
