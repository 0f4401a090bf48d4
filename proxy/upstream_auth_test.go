package proxy

import (
	"strings"
	"testing"
	"time"
)

// An upstream with an extra_key that answers 401 refused one of the two
// keys, and pamctl cannot tell which: the answer, the trail and the log
// name both vault entries (names, never values) and do not blame the
// provider key alone (review: a stale extra key was reported as a wrong
// provider key). The same for the model list. Either key being wrong
// gives the same answer.
func TestUpstream401WithExtraKeyNamesBothEntries(t *testing.T) {
	for _, stale := range []string{"provider", "extra"} {
		t.Run(stale, func(t *testing.T) {
			gw := newHeaderGateway(t, map[string]string{"Api-Key": vaultedKey, "X-Gateway-Key": extraVaulted}, false)
			keys := keySource{"azure-backend": vaultedKey, "gateway-key": extraVaulted}
			if stale == "provider" {
				keys["azure-backend"] = vaultedKey + "-stale"
			} else {
				keys["gateway-key"] = extraVaulted + "-stale"
			}
			h := newHarness(t, func(o *Options) {
				o.Keys = keys
				o.Upstreams = []Upstream{{Name: "openai", URL: gw.srv.URL + "/v1", KeyName: "azure-backend", Timeout: time.Minute,
					KeyHeader: "api-key", ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gateway-key"}}}
			})
			tok := h.mint(grant{scope: "model:gpt-4o-mini"})
			for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
				res, b := chatOrModels(h, path, tok)
				e := apiErr(t, b)
				if res.StatusCode != 502 || e.Code != CodeUpstreamAuth {
					t.Fatalf("%s: %d %s", path, res.StatusCode, b)
				}
				for _, want := range []string{"provider key (vault entry azure-backend)", "extra key (extra_key, vault entry gateway-key)",
					"pamctl vault set azure-backend", "pamctl vault set gateway-key"} {
					if !strings.Contains(e.Message, want) {
						t.Errorf("%s: the message lacks %q: %s", path, want, e.Message)
					}
				}
				if strings.Contains(e.Message, "refused the vaulted provider key") {
					t.Errorf("%s: the provider key is blamed alone: %s", path, e.Message)
				}
				ev := h.sink.last(t)
				if !strings.Contains(ev.Error, CodeUpstreamAuth) || !strings.Contains(ev.Error, "azure-backend") || !strings.Contains(ev.Error, "gateway-key") {
					t.Errorf("%s: the audit event does not name both entries: %q", path, ev.Error)
				}
				for _, v := range []string{vaultedKey, extraVaulted} {
					if strings.Contains(string(b), v) || strings.Contains(ev.Error, v) || strings.Contains(h.logs.String(), v) {
						t.Errorf("%s: a key value was shown", path)
					}
				}
			}
			if logs := h.logs.String(); !strings.Contains(logs, "azure-backend") || !strings.Contains(logs, "gateway-key") {
				t.Errorf("the log does not name both entries:\n%s", logs)
			}
		})
	}
}
