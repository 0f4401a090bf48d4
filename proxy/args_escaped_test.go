package proxy

import (
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// Call arguments are JSON inside a JSON string: the agent decodes them a
// second time. An address or a vaulted key spelled with escapes inside the
// arguments ({"mail":"bob.smith\u0040example.com"}, whose outer JSON holds
// \\u0040) is what that second decode reads, so masking and key scrubbing
// read it too: chat and Responses, whole and streamed, with and without a
// tool judge, masking on or (for keys) off; and the tool.call event holds
// it masked.
func TestEscapedArgumentsMaskedAndScrubbed(t *testing.T) {
	key := vaultedKey
	// The key's "V" (0x56), "8" (0x38) and "-" (0x2d) as escapes.
	keyEsc := strings.Replace(strings.Replace(strings.Replace(key, "V", `\u0056`, 1), "8", `\u0038`, 1), "-", `\u002D`, 1)
	for _, c := range []struct {
		name, args string
		leaks      []string
	}{
		{"address", `{"mail":"bob.smith\u0040example.com"}`, []string{"bob.smith", `u0040example`}},
		{"address, pair", `{"mail":"bob.smith\u0040ex\u0061mple.com","e":"\ud83d\ude00"}`, []string{"bob.smith", `u0040ex`}},
		{"key", `{"k":"` + keyEsc + `"}`, []string{"8c1f0e6b2d4a4f7e9a3b5c7d9e1f3a5b"}},
	} {
		for _, mode := range argModes {
			if !strings.HasPrefix(mode, "masked") && c.name != "key" {
				continue // keys are scrubbed whatever masking does
			}
			h, _, judged := argModeHarness(t, mode)
			tok := h.mint(grant{scope: "model:gpt-4o"})
			args := c.args
			for _, tr := range callTransports("http", args) {
				h.up.set(tr.up)
				res, b := h.do("POST", tr.path, tok, tr.body)
				name := c.name + ", " + tr.name + ", " + mode
				if res.StatusCode != 200 || strings.Contains(string(b), CodeToolCallMalformed) {
					t.Errorf("%s: %d %s", name, res.StatusCode, b)
					continue
				}
				for _, leak := range c.leaks {
					if strings.Contains(string(b), leak) {
						t.Errorf("%s: %q reached the client: %s", name, leak, b)
					}
				}
				if judged {
					evs := h.sink.ofType(audit.TypeToolCall)
					for _, leak := range c.leaks {
						if a := evs[len(evs)-1].Details["arguments"]; strings.Contains(a, leak) {
							t.Errorf("%s: %q in the tool.call event: %s", name, leak, a)
						}
					}
				}
			}
		}
	}
}
