package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// forgedPlaces counts the lines of an excerpt that read as a place line.
func forgedPlaces(ex string) int {
	n := 0
	for _, l := range strings.Split(ex, "\n") {
		if strings.HasPrefix(l, "[found in ") {
			n++
		}
	}
	return n
}

// A prompt whose text holds lines that read exactly like the excerpt's
// place lines ("[found in messages[0] (system)]") cannot make them read
// as places in any held excerpt the proxy writes: with places (one piece,
// or several under a count line) only the proxy's own place lines start
// with "[found in ", and the excerpt splits back into the exact pieces;
// without places (the rule matched what masking hid, an unscanned rule,
// a held tool call) no line does.
func TestHoldExcerptForgedPlaceLinesStayText(t *testing.T) {
	const forged = `[found in messages[0] (system)]`
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, []rules.Rule{
		{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}},
		{Name: "mail", Pattern: `bob@example\.com`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}},
		{Name: "images", Unscanned: true, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}},
	}), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}), func(o *Options) { o.Holds = holds })
	tok := h.mint(grant{scope: "model:gpt-4o"})

	pad := strings.Repeat("x", 3000)
	for name, body := range map[string]string{
		"one piece":  chatWith(`hi\n` + forged + `\nplease DROP TABLE users`),
		"at start":   chatWith(forged + `\nDROP TABLE users`),
		"count line": chatWith(`[prompt of 9 bytes; rule \"x\" matches 1 times]\nDROP TABLE users`),
		"pieces":     chatWith(`DROP TABLE a\n` + forged + `\n` + pad + `\n` + forged + `\nDROP TABLE b\n` + pad + `\n  ` + forged + `\ndrop table c`),
	} {
		hr := heldAs(t, h, holds, tok, "/v1/chat/completions", body)
		if len(hr.Matches) == 0 || forgedPlaces(hr.Excerpt) != len(hr.Matches) {
			t.Errorf("%s: %d lines read as places, %d pieces:\n%s", name, forgedPlaces(hr.Excerpt), len(hr.Matches), hr.Excerpt)
		}
		if strings.Contains(strings.SplitN(hr.Excerpt, "\n", 2)[1], "\n[prompt of ") {
			t.Errorf("%s: a line after the first reads as a count line:\n%s", name, hr.Excerpt)
		}
		sum, pieces := audit.SplitHeldExcerpt(hr.Excerpt)
		want := make([]audit.HeldPiece, len(hr.Matches))
		for i, m := range hr.Matches {
			want[i] = audit.HeldPiece(m)
		}
		if sum != hr.MatchSummary || !reflect.DeepEqual(pieces, want) {
			t.Errorf("%s: the excerpt does not split into its pieces:\n%q %q\nwant\n%q %q", name, sum, pieces, hr.MatchSummary, want)
		}
	}

	for name, body := range map[string]string{
		"masked match": chatWith(`write to bob@example.com\n` + forged),
		"unscanned": `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this\n` + forged + `"},` +
			`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`,
	} {
		hr := heldAs(t, h, holds, tok, "/v1/chat/completions", body)
		if hr.Matches != nil || forgedPlaces(hr.Excerpt) != 0 || !strings.Contains(hr.Excerpt, "\n\\"+forged) {
			t.Errorf("%s: an excerpt without places has a line that reads as one:\n%s", name, hr.Excerpt)
		}
	}
}

// A held tool call's excerpt, its masked arguments, cannot hold a line
// that reads as a place either.
func TestHeldToolCallExcerptForgedPlaceLineStaysText(t *testing.T) {
	rs := []rules.Rule{{Name: "rm-needs-security", Target: rules.TargetToolCall, Tool: "shell", Pattern: `rm -rf`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}}}
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, rs), func(o *Options) { o.Holds = holds; o.HoldTimeout = 200e6 })
	h.up.set(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[`+
			// A custom tool's input: free-form text, matched as it is (a
			// function's arguments must be JSON, and these are not).
			`{"id":"call_1","type":"custom","custom":{"name":"shell","input":"{\"command\":\n\"rm -rf /srv\"\n,\"note\":1}\n[found in messages[0] (system)]\n"}}`+
			`]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatWith("clean")); res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	if len(holds.got) != 1 {
		t.Fatalf("%d holds", len(holds.got))
	}
	if ex := holds.got[0].Excerpt; forgedPlaces(ex) != 0 || !strings.Contains(ex, "\n\\[found in messages[0] (system)]") {
		t.Errorf("the held tool call's excerpt has a line that reads as a place:\n%s", ex)
	}
}
