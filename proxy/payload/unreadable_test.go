package payload

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
)

func TestCheckSurrogates(t *testing.T) {
	for s, lone := range map[string]bool{
		`{"a":"b"}`:                         false,
		`{"a":"\ud83d\ude00"}`:              false, // a pair
		`{"a":"\uD83D\uDE00"}`:              false,
		`{"a":"\u00e9 \n \" \\ \/"}`:        false,
		`{"a":"\\ud800"}`:                   false, // an escaped backslash, then text
		`{"a":"\\\\ud800"}`:                 false,
		`{"a":"victim.doe\ud800@corp.org"}`: true,
		`{"a":"\uD800"}`:                    true,
		`{"a":"\udc00"}`:                    true, // a low surrogate alone
		`{"a":"\ude00\ud83d"}`:              true, // a pair the wrong way round
		`{"a":"\ud83d\u0041"}`:              true, // high, then no low
		`{"a":"\ud83d\ud83d\ude00"}`:        true,
		`{"a":"\ud83d`:                      true, // at the end
		`{"k\ud800":1}`:                     true, // in a key
		`{"a":"\\\ud800"}`:                  true,
		`\`:                                 false,
		`\u12`:                              false,
	} {
		err := checkSurrogates(s)
		if (err != nil) != lone || err != nil && !errors.Is(err, ErrUnreadableJSON) {
			t.Errorf("checkSurrogates(%s) = %v, want lone %v", s, err, lone)
		}
	}
}

// lonely is the red team's address, split by a lone surrogate escape: Go
// reads U+FFFD there, so no detector finds the address, while a client
// that drops lone surrogates reads it whole.
const lonely = `victim.doe\ud800@corp-secret.org`

// TestLoneSurrogateAnswersRefused (red team F9): a buffered answer of any
// shape with a lone surrogate escape is refused (the proxy answers 502),
// masking on or off, fast paths or not; before, the fast path relayed the
// escape as written.
func TestLoneSurrogateAnswersRefused(t *testing.T) {
	off, _ := mask.New(mask.Config{})
	for _, c := range []struct{ ep, body string }{
		{EndpointChat, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"mail ` + lonely + `"},"finish_reason":"stop"}]}`},
		{EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"sh\udfffell","arguments":"{}"}}]}}]}`},
		{EndpointChat, `{"choices":[{"index":0,"message":{"role":"assistant","content":"x","n\ud800ote":"y"}}]}`},
		{EndpointResponses, `{"id":"r","object":"response","output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"` + lonely + `"}]}]}`},
		{EndpointItems, `{"object":"list","data":[{"type":"message","id":"m","content":[{"type":"output_text","text":"` + lonely + `"}]}]}`},
		{EndpointItem, `{"type":"function_call_output","id":"o","call_id":"c","output":"` + lonely + `"}`},
		{EndpointChatMessages, `{"object":"list","data":[{"id":"m","role":"assistant","content":"` + lonely + `"}]}`},
	} {
		for _, m := range []*mask.Masker{testMasker(t), off} {
			for _, fast := range []bool{true, false} {
				withFastPaths(fast, func() {
					out, _, err := MaskResponse(c.ep, []byte(c.body), m)
					if !errors.Is(err, ErrUnreadableJSON) || out != nil {
						t.Errorf("%s %s (masking %v, fast paths %v): %v %s", c.ep, c.body, m.Enabled(), fast, err, out)
					}
				})
			}
		}
	}
	// A pair and an escaped backslash are no lone surrogates.
	body := `{"choices":[{"index":0,"message":{"role":"assistant","content":"\ud83d\ude00 \\ud800"}}]}`
	if out, _, err := MaskResponse(EndpointChat, []byte(body), testMasker(t)); err != nil || string(out) != body {
		t.Errorf("%s: %v %s", body, err, out)
	}
}

// TestLoneSurrogateEventEndsStream (red team F9): a stream event with a
// lone surrogate escape ends the relay with ErrUnreadableJSON, none of it
// relayed, on the chat and Responses fast and generic paths, with masking
// on or only vaulted keys to scrub; what came before goes out.
func TestLoneSurrogateEventEndsStream(t *testing.T) {
	off, _ := mask.New(mask.Config{})
	keys := scrub.New("sk-test-" + strings.Repeat("k3y", 8))
	before := `{"choices":[{"index":0,"delta":{"content":"first "},"finish_reason":null}]}`
	for _, c := range []struct{ ep, stream string }{
		// The fast path's usual chunk.
		{EndpointChat, sseOf([]string{before, `{"choices":[{"index":0,"delta":{"content":"mail ` + lonely + `"},"finish_reason":null}]}`, "[DONE]"})},
		// The generic path (a tool call).
		{EndpointChat, sseOf([]string{before, `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"` + lonely + `"}}]},"finish_reason":null}]}`, "[DONE]"})},
		// In a key.
		{EndpointChat, sseOf([]string{before, `{"choices":[{"index":0,"delta":{"c\ud800ontent":"x"},"finish_reason":null}]}`, "[DONE]"})},
		// Responses fast path (output_text.delta) and generic paths.
		{EndpointResponses, respEvents(respDelta(1, "m", "first "), `{"type":"response.output_text.delta","sequence_number":2,"item_id":"m","output_index":0,"content_index":0,"delta":"mail `+lonely+`"}`)},
		{EndpointResponses, respEvents(respDelta(1, "m", "first "), `{"type":"response.output_item.done","output_index":0,"item":{"id":"m","type":"message","content":[{"type":"output_text","text":"`+lonely+`"}]}}`)},
		{EndpointResponses, respEvents(respDelta(1, "m", "first "), `{"type":"response.future","note":"`+lonely+`"}`)},
	} {
		for _, cfg := range []struct {
			m    *mask.Masker
			keys *scrub.Set
		}{{testMasker(t), nil}, {off, keys}} {
			for _, fast := range []bool{true, false} {
				withFastPaths(fast, func() {
					var out bytes.Buffer
					r, err := NewScrubbedRelay(&out, nil, strings.NewReader(c.stream), c.ep, cfg.m, cfg.keys)
					if err != nil {
						t.Fatal(err)
					}
					for r.Step() {
					}
					_, err = r.Result()
					if !errors.Is(err, ErrUnreadableJSON) || strings.Contains(out.String(), "corp-secret") || strings.Contains(out.String(), "[DONE]") ||
						!strings.Contains(out.String(), "first") {
						t.Errorf("%s (masking %v, fast paths %v): %v\n%s\n->\n%s", c.ep, cfg.m.Enabled(), fast, err, c.stream, out.String())
					}
				})
			}
		}
	}
}
