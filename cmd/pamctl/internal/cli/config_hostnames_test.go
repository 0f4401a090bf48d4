package cli

import (
	"strings"
	"testing"
)

// metrics.hostnames (and broker.hostnames) entries are judged as
// proxy.hostnames entries are: a name or name:port, not empty, no '/',
// '@' or space; Validate (serve's start, config check) names the setting
// and the entry. proxy.hostnames is judged there too, not first when
// the proxy's listener starts.
func TestHostnamesValidated(t *testing.T) {
	for _, key := range []string{"metrics", "proxy", "broker"} {
		for _, bad := range []string{`"https://pamctl.example"`, `"user@pamctl.example"`, `"pamctl example"`, `""`, `"pamctl.example:"`} {
			body := key + ":\n  hostnames: [\"ok.example\", " + bad + "]\n"
			cfg, err := LoadConfig(writeConfig(t, body), nil)
			if err != nil {
				t.Fatalf("%q: %v", body, err)
			}
			err = cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), key+".hostnames") || !strings.Contains(err.Error(), strings.Trim(bad, `"`)) {
				t.Errorf("%s.hostnames %s: got %v", key, bad, err)
			}
			if err != nil && strings.Contains(err.Error(), "ok.example") {
				t.Errorf("%s.hostnames %s: the good entry is named: %v", key, bad, err)
			}
		}
		for _, good := range []string{`"pamctl.example"`, `"pamctl.example:9090"`, `"[::1]"`, `"[::1]:9090"`, `"PAMCTL.example."`} {
			body := key + ":\n  hostnames: [" + good + "]\n"
			cfg, err := LoadConfig(writeConfig(t, body), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s.hostnames %s: %v", key, good, err)
			}
		}
	}
}
