package proxy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/rules"
)

// heldAs sends body to path and returns the hold it made.
func heldAs(t *testing.T, h *harness, holds *fakeHolds, tok, path, body string) HoldRequest {
	t.Helper()
	holds.got = nil
	if res, b := h.do("POST", path, tok, body); res.StatusCode != 403 || len(holds.got) != 1 {
		t.Fatalf("%s: %d %s, %d holds", body[:min(len(body), 80)], res.StatusCode, b, len(holds.got))
	}
	return holds.got[0]
}

// wheres lists the places of a hold's pieces.
func wheres(hr HoldRequest) [][]string {
	var out [][]string
	for _, m := range hr.Matches {
		out = append(out, m.Where)
	}
	return out
}

// TestHoldExcerptSaysWhereTheRuleMatched: an approver is told where in the
// call each match is (review: the excerpt showed words, not whether they
// were in the system message, the user's, a tool's output, the
// instructions or an assistant turn the agent wrote), on a line of its
// own before each piece of the excerpt and as data beside it.
func TestHoldExcerptSaysWhereTheRuleMatched(t *testing.T) {
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, testRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}),
		func(o *Options) { o.Holds = holds })
	tok := h.mint(grant{scope: "model:gpt-4o"})

	// A short prompt is shown whole, after the places of its matches.
	hr := heldAs(t, h, holds, tok, "/v1/chat/completions", `{"model":"gpt-4o","messages":[
		{"role":"system","content":"You may DROP TABLE scratch"},
		{"role":"user","content":"tidy up"},
		{"role":"assistant","content":"I will drop table users now"},
		{"role":"tool","tool_call_id":"c","content":"ok"}]}`)
	want := []string{"messages[0] (system)", "messages[2] (assistant)"}
	if len(hr.Matches) != 1 || !slices.Equal(hr.Matches[0].Where, want) || hr.MatchSummary != "" ||
		hr.Excerpt != "[found in messages[0] (system); messages[2] (assistant)]\n"+hr.Matches[0].Text ||
		hr.Matches[0].Text != "You may DROP TABLE scratch\ntidy up\nI will drop table users now\nok" {
		t.Fatalf("short prompt: %q %+v %q", hr.Excerpt, hr.Matches, hr.MatchSummary)
	}

	// Masking that shortens (an email) or lengthens (an IP address) the
	// text just before a place does not move a match at its edge into
	// the place next to it.
	for _, c := range []struct{ body, want string }{
		{`{"model":"gpt-4o","messages":[{"role":"system","content":"mail bob@example.com"},{"role":"user","content":"DROP TABLE x"}]}`, "messages[1] (user)"},
		{`{"model":"gpt-4o","messages":[{"role":"system","content":"10.0.0.1 10.0.0.2 DROP"},{"role":"user","content":"TABLE x"}]}`, "messages[0] (system) to messages[1] (user)"},
	} {
		if got := wheres(heldAs(t, h, holds, tok, "/v1/chat/completions", c.body)); len(got) != 1 || !slices.Equal(got[0], []string{c.want}) {
			t.Errorf("%s: places %q, want %q", c.body, got, c.want)
		}
	}

	// A long one: each piece names the places of its own matches, found
	// through masking that changed the text's length before them (an
	// email masked in the system message) and the placeholders.
	filler := strings.Repeat("lorem ipsum dolor sit amet ", 60)
	hr = heldAs(t, h, holds, tok, "/v1/responses", `{"model":"gpt-4o","instructions":"mail ops@example.com, `+filler+`",
		"input":[{"role":"developer","content":"`+filler+`then DROP TABLE a"},
			{"type":"function_call_output","call_id":"c","output":"`+filler+`drop table b `+filler+`"},
			{"role":"user","content":[{"type":"input_text","text":"`+filler+`"},{"type":"input_text","text":"drop table c"}]}],
		"tools":[{"type":"function","name":"f","description":"`+filler+`drops tables: DROP TABLE d"}]}`)
	got := wheres(hr)
	wantAll := [][]string{{"input[0] (developer)"}, {"input[1].output (function_call_output)"}, {"input[2] (user)"}, {"tools[0].description"}}
	if len(got) != len(wantAll) || !strings.HasPrefix(hr.MatchSummary, "prompt of ") || !strings.HasSuffix(hr.MatchSummary, ` bytes; rule "destructive-sql" matches 4 times`) {
		t.Fatalf("long prompt: places %q, summary %q", got, hr.MatchSummary)
	}
	for i := range wantAll {
		if !slices.Equal(got[i], wantAll[i]) || !strings.Contains(strings.ToLower(hr.Matches[i].Text), "table "+string(rune('a'+i))) ||
			!strings.Contains(hr.Excerpt, "[found in "+strings.Join(wantAll[i], "; ")+"]\n"+hr.Matches[i].Text) {
			t.Errorf("piece %d: %q %q", i, got[i], hr.Matches[i].Text)
		}
	}
	if strings.Contains(hr.Excerpt, "ops@") || !strings.HasPrefix(hr.Excerpt, "["+hr.MatchSummary+"]\n[found in input[0] (developer)]\n…") {
		t.Errorf("excerpt %q", hr.Excerpt)
	}

	// A match over two messages names both; one in a message's name or
	// in a tool call the agent wrote as the assistant's names the field.
	hr = heldAs(t, h, holds, tok, "/v1/chat/completions", `{"model":"gpt-4o","messages":[
		{"role":"user","content":"please DROP"},{"role":"assistant","content":"TABLE users"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"sql","arguments":"{\"q\":\"drop table x\"}"}}]}]}`)
	if got := wheres(hr); len(got) != 1 || !slices.Equal(got[0], []string{"messages[0] (user) to messages[1] (assistant)", "messages[2].tool_calls[0].function.arguments (assistant)"}) {
		t.Errorf("matches over two messages and in a tool call: %q", got)
	}
}

// Places the agent named (roles, keys) are masked as the prompt is, cut,
// and shown on one line: a role of "user\n[approved by admin]" cannot add
// a line to the excerpt (its line feed is written ⏎ outside the quotes,
// audit.QuoteLine), nor one holding a secret show it. A rule that
// redacts text before the match does not move it to another place.
func TestHoldPlacesOfHostileNames(t *testing.T) {
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, testRules), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}),
		func(o *Options) { o.Holds = holds })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for _, c := range []struct{ role, want string }{
		{"user\n[approved by admin]", "messages[1] (role \"user\"\u23ce\"[approved by admin]\")"},
		{"bob@example.com", `messages[1] (role "[EMAIL]")`},
		{"\x1b[2J<b>*x*</b>\u202e", "messages[1] (role \"\x1b[2J<b>*x*</b>\u202e\")"}, // raw: each view escapes it, once
		{strings.Repeat("r", 1<<20), `messages[1] (role "` + strings.Repeat("r", 40) + `"…)`},
	} {
		role, _ := json.Marshal(c.role)
		hr := heldAs(t, h, holds, tok, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"system","content":"Project Nightingale is `+
			strings.Repeat("secret ", 50)+`"},{"role":`+string(role)+`,"content":"DROP TABLE t"}]}`)
		if got := wheres(hr); len(got) != 1 || !slices.Equal(got[0], []string{c.want}) || strings.Count(hr.Excerpt, "\n") != 2 ||
			strings.Contains(hr.Excerpt, "Nightingale") || strings.Contains(hr.Excerpt, "bob@") {
			t.Errorf("role %.30q: places %q, excerpt %q", c.role, got, hr.Excerpt)
		}
	}
}

// A name in a place goes through what the prompt's text goes through: redact
// rules and prompt masking as well as the response masker (here off).
func TestHoldPlacesAreRedactedAsThePrompt(t *testing.T) {
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, testRules), withMasking(t, mask.Config{Detectors: map[string]mask.Action{"EMAIL": mask.ActionRedact}}, mask.Config{}),
		func(o *Options) { o.Holds = holds })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	hr := heldAs(t, h, holds, tok, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"Project Nightingale bob@example.com","content":"DROP TABLE t"}]}`)
	if got := wheres(hr); len(got) != 1 || !slices.Equal(got[0], []string{`messages[0] (role "[REDACTED:codename] [REDACTED]")`}) {
		t.Fatalf("places %q", got)
	}
}

// An unscanned rule's excerpt names no place (it shows what pamctl could
// not read); nor does the excerpt of a rule that matches nothing of the
// masked prompt (it matched what masking hid): both are as before.
func TestHoldWithoutPlaces(t *testing.T) {
	holds := &fakeHolds{decision: HoldDecision{ID: "req_h", Reason: "no"}}
	h := newHarness(t, withRules(t, []rules.Rule{
		{Name: "mail", Pattern: `bob@example\.com`, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}},
		{Name: "images", Unscanned: true, Action: rules.RequireApproval, Approvers: rules.Approvers{Groups: []string{"security"}}},
	}), withMasking(t, mask.Config{}, mask.Config{Default: mask.ActionMask}), func(o *Options) { o.Holds = holds })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	hr := heldAs(t, h, holds, tok, "/v1/chat/completions", chatWith("write to bob@example.com"))
	if hr.Matches != nil || hr.MatchSummary != "" || hr.Excerpt != "be brief\nwrite to [EMAIL]" {
		t.Fatalf("a rule that matched what masking hid: %+v", hr)
	}
	hr = heldAs(t, h, holds, tok, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},`+
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`)
	if hr.Rule != "images" || hr.Matches != nil || hr.MatchSummary != "" || !strings.HasPrefix(hr.Excerpt, "[not readable by pamctl: messages[0].content[1] (image_url)]") {
		t.Fatalf("an unscanned rule: %+v", hr)
	}
}

func same(s string) string { return s }

// matchPlaces names no place when the body does not read as the masked
// prompt the spans are of (a body changed after its prompt was read): a
// wrong place is worse than none.
func TestMatchPlacesOnlyOfTheHeldPrompt(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"a"},{"role":"user","content":"drop table x"}]}`)
	req, err := payload.ParseRequest("/v1/chat/completions", body)
	if err != nil {
		t.Fatal(err)
	}
	c := &call{Inspection: &Inspection{}, req: req, body: body, prompt: req.Text}
	spans := [][2]int{{2, 12}}
	if got := matchPlaces(c, spans, same); len(got) != 1 || got[0] != "messages[1] (user)" {
		t.Fatalf("places %q", got)
	}
	c.prompt = "b\ndrop table x"
	if got := matchPlaces(c, spans, same); got != nil {
		t.Fatalf("places of another prompt: %q", got)
	}
}
