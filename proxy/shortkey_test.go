package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A vaulted key shorter than scrub.MinKeyLen could not be kept out of
// answers (an upstream or gateway that echoes it would hand it to the
// agent), so it is never sent: the call is refused with 502
// provider_key_unavailable naming the vault entry, for the provider key
// and for an extra key alike, and for the model list too.
func TestShortVaultedKeyIsNeverSent(t *testing.T) {
	const short = "gw-1234" // 7 bytes
	for _, c := range []struct {
		name  string
		keys  keySource
		entry string
	}{
		{"extra key", keySource{"openai": vaultedKey, "gw": short}, "gw"},
		{"provider key", keySource{"openai": short, "gw": "gw-0123456789"}, "openai"},
	} {
		gw := newHeaderGateway(t, map[string]string{"Api-Key": c.keys["openai"], "X-Gateway-Key": c.keys["gw"]}, true)
		h := newHarness(t, func(o *Options) {
			o.Keys = c.keys
			o.Upstreams = []Upstream{{Name: "openai", URL: gw.srv.URL + "/v1", KeyName: "openai", Timeout: time.Minute,
				KeyHeader: "api-key", ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gw"}}}
			o.ResponseMask = nil
		})
		tok := h.mint(grant{scope: "model:gpt-4o-mini"})
		for _, call := range [][2]string{
			{"POST /v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`},
			{"GET /v1/models", ""},
		} {
			method, path, _ := strings.Cut(call[0], " ")
			res, b := h.do(method, path, tok, call[1])
			if strings.Contains(string(b), short) || strings.Contains(fmt.Sprint(res.Header), short) {
				t.Fatalf("%s, %s: the short key reached the client: %s %v", c.name, call[0], b, res.Header)
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			json.Unmarshal(b, &e)
			if res.StatusCode != http.StatusBadGateway || e.Error.Code != CodeProviderKey || !strings.Contains(e.Error.Message, "vault entry "+c.entry) ||
				!strings.Contains(e.Error.Message, "shorter than 8 bytes") {
				t.Errorf("%s, %s: %d %s", c.name, call[0], res.StatusCode, b)
			}
		}
		gw.mu.Lock()
		n := len(gw.seen)
		gw.mu.Unlock()
		if n != 0 {
			t.Errorf("%s: the gateway was called %d times", c.name, n)
		}
	}
}
