package proxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// hostileWords are names and words an upstream or an agent may send that
// pamctl quotes in its own text (an error's detail, a held excerpt).
var hostileWords = []string{
	"chat\u202ecompletion", "chat\u200bcompletion", `a"b`, `a\b`, `C:\`, `\u202e`, "x, y", "x; y", "x]",
	"x\n[found in messages[0] (system)]", `x", not "chat.completion`,
}

// readsOnce reports whether v, a view of text that holds word (escaped
// once, as every view shows it), shows word's U+202E and zero-width
// space as escapes and its six typed characters \u202e as \\u202e.
func readsOnce(v, word string) bool {
	return strings.Count(v, `\\u202e`) == strings.Count(word, `\u202e`) &&
		strings.Count(v, `\u202e`)-strings.Count(v, `\\u202e`) == strings.Count(word, "\u202e") &&
		strings.Count(v, `\u200b`) == strings.Count(word, "\u200b") && !strings.Contains(v, `\\\`)
}

// The word an upstream's answer names itself by is kept in the audit
// event's detail raw, in quotes (audit.Quote), so the text view shows
// it escaped once and -o json exactly: before, it was Go-quoted (of the
// JSON text, escapes and all) and a view read \\u202e for a U+202E. The
// quote cannot be ended early: the detail reads back to the word and
// pamctl's words after it.
func TestUpstreamWordsInDetailsAreQuotedOnce(t *testing.T) {
	for _, masked := range []bool{false, true} {
		opts := []harnessOption{}
		if masked {
			opts = append(opts, withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}))
		}
		h := newHarness(t, opts...)
		tok := h.mint(grant{scope: "model:gpt-4o"})
		for _, word := range hostileWords {
			j, _ := json.Marshal(word)
			h.up.set(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, strings.Replace(usualChatAnswer, `"chat.completion"`, string(j), 1))
			})
			if res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("hi")); res.StatusCode != http.StatusBadGateway {
				t.Fatalf("%q: %d %s", word, res.StatusCode, b)
			}
			d := h.sink.last(t).Details["detail"]
			_, q, ok := strings.Cut(d, "names itself ")
			back, rest, unq := audit.Unquote(q)
			if !ok || !unq || back != word || !strings.HasPrefix(rest, `, not "chat.completion"`) {
				t.Errorf("masked %v: %q is in the detail as %q, which reads back %q, %q", masked, word, d, back, rest)
			}
			if v := safetext.Escape(d); !readsOnce(v, word) {
				t.Errorf("masked %v: %q reads %s in a view", masked, word, v)
			}
		}
	}
}

// A held tool call's excerpt names the tool raw in quotes (audit.QuoteLine
// by toolcall.QuoteName): a name with a line feed, a quote or a place
// line in it cannot add a line, a place or end the quote, and a view
// shows it escaped once.
func TestHeldToolCallNameQuotedOnce(t *testing.T) {
	rs := []rules.Rule{{Name: "rm", Target: rules.TargetToolCall, Tool: "*", Pattern: `rm -rf`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, rs), func(o *Options) { o.Holds = holds; o.HoldTimeout = 200e6 })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for _, name := range hostileWords {
		j, _ := json.Marshal(name)
		h.up.set(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[`+
				`{"id":"call_1","type":"function","function":{"name":`+string(j)+`,"arguments":"{\"command\":\"rm -rf /srv\"}"}}`+
				`]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
		})
		n := len(holds.got)
		if res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("clean")); res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		if len(holds.got) != n+1 {
			t.Fatalf("%q: not held", name)
		}
		ex := holds.got[n].Excerpt
		q, ok := strings.CutPrefix(ex, "tool ")
		back, rest, unq := audit.Unquote(q)
		if !ok || !unq || back != name || !strings.HasPrefix(rest, " arguments: {") || strings.Contains(ex, "\n") || holds.got[n].Tool != name {
			t.Errorf("%q: the excerpt %q reads back %q, %q", name, ex, back, rest)
		}
		if v := safetext.Escape(ex); !readsOnce(v, name) {
			t.Errorf("%q reads %s", name, v)
		}
	}
}

// What a client or an upstream wrote that a refusal names (a path, a
// model, a query key, a Content-Encoding) is quoted in the message and
// the audit event's error raw (audit.Quote), for a view to escape once:
// Go's %q made a view read \\u202e where the client sent a U+202E.
func TestRefusalsQuoteWhatOthersSentOnce(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	check := func(what, word, got, before, after string) {
		t.Helper()
		_, q, ok := strings.Cut(got, before)
		back, rest, unq := audit.Unquote(q)
		if !ok || !unq || back != word || !strings.HasPrefix(rest, after) {
			t.Errorf("%s %q: %q reads back %q, %q", what, word, got, back, rest)
		}
		if v := safetext.Escape(got); !readsOnce(v, strings.Repeat(word, strings.Count(got, word))) {
			t.Errorf("%s %q reads %s", what, word, v)
		}
	}
	for _, word := range []string{"x\u202ey", "x\u200by", `a"b`, `\u202e`, "x, y", "x]"} {
		res, b := h.do("POST", "/v2/"+url.PathEscape(word), tok, chatWith("hi"))
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		check("path", "/v2/"+word, apiErr(t, b).Message, "Unknown path ", ".")
		check("path in the trail", "/v2/"+word, h.sink.last(t).Error, "Unknown path ", ".")

		j, _ := json.Marshal(word)
		res, b = h.do("POST", "/v1/chat/completions", tok, `{"model":`+string(j)+`,"messages":[{"role":"user","content":"hi"}]}`)
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		check("model", word, h.sink.last(t).Error, "Model ", " is not in")

		res, b = h.do("POST", "/v1/chat/completions?"+url.QueryEscape(word)+"=1", tok, chatWith("hi"))
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		check("query", word, h.sink.last(t).Error, "The query names ", ", which")

		h.up.set(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", word)
			writeJSON(w, usualChatAnswer)
		})
		if strings.ContainsFunc(word, func(r rune) bool { return r >= 0x80 }) {
			continue // not a header value Go's server writes
		}
		res, b = h.do("POST", "/v1/chat/completions", tok, chatWith("hi"))
		if res.StatusCode != http.StatusBadGateway {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		check("Content-Encoding", word, h.sink.last(t).Error, "Content-Encoding ", ", which")
	}
}
