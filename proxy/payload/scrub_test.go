package payload

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
)

// TestScrubbedRelayKeySplitAcrossEvents: a key split over the text deltas
// of any number of events never comes back together in what a client
// joins, with masking on or off, on the chat and the Responses endpoints.
func TestScrubbedRelayKeySplitAcrossEvents(t *testing.T) {
	const key = "3f9c2b7e1d4a4c8e9b0f6a5d2e7c1b94" // no detector knows this shape
	set := scrub.New(key)
	text := "the key is " + key + ", keep it"
	for _, m := range []*mask.Masker{nil, newMasker(t)} {
		for _, n := range []int{1, 3, 8, 31} {
			parts := split(text, n)
			var chat []string
			for _, p := range parts {
				chat = append(chat, delta(p))
			}
			chat = append(chat, chunk(`[{"index":0,"delta":{},"finish_reason":"stop"}]`), "[DONE]")
			for ep, in := range map[string]string{EndpointChat: sseOf(chat), EndpointResponses: respSSE(parts, true)} {
				var out bytes.Buffer
				r, err := NewScrubbedRelay(&out, nil, strings.NewReader(in), ep, m, set)
				if err != nil {
					t.Fatal(err)
				}
				for r.Step() {
				}
				res, err := r.Result()
				if err != nil {
					t.Fatal(err)
				}
				joined := joinedText(out.String())
				if strings.Contains(joined, key[:12]) || strings.Contains(out.String(), key) || strings.Contains(res.Summary, key) {
					t.Errorf("%s masked=%v split %d: the key came back:\n%s", ep, m.Enabled(), n, out.String())
				}
				if !strings.Contains(joined, scrub.Marker) {
					t.Errorf("%s masked=%v split %d: no marker in %q", ep, m.Enabled(), n, joined)
				}
			}
		}
	}
}
