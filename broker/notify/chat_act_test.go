package notify

import (
	"encoding/json"
	"strings"
	"testing"
)

// Black-box red team: the approver never saw a CI job's act (who
// triggered the run). Chat messages name it as a fact of its own, with the
// person act_people maps it to, and the generic webhook carries both.
func TestChatShowsTheAct(t *testing.T) {
	e := Event{Type: TypeRequestPending, Kind: "access", RequestID: "req_x", Subject: "repo:acme/app:ref:refs/heads/main",
		Scopes: []string{"model:gpt-4o"}, Act: "alice-gh", ActFor: "alice@example.com", Time: created}
	raw, _ := SlackPayload(e)
	if !strings.Contains(string(raw), "*Acting for*\\n`alice-gh = alice@example.com`") {
		t.Errorf("slack message lacks the act: %s", raw)
	}
	tm := teamsMessageOf(t, e)
	found := false
	for _, b := range tm.Attachments[0].Content.Body {
		for _, f := range b.Facts {
			found = found || f.Title == "Acting for" && f.Value == teamsText("alice-gh = alice@example.com", maxChatName)
		}
	}
	if !found {
		t.Errorf("teams card lacks the act: %s", raw)
	}
	b, _ := json.Marshal(e)
	if !strings.Contains(string(b), `"act":"alice-gh","act_for":"alice@example.com"`) {
		t.Errorf("generic payload: %s", b)
	}
	e.ActFor = ""
	raw, _ = SlackPayload(e)
	if !strings.Contains(string(raw), "*Acting for*\\n`alice-gh`") {
		t.Errorf("slack message lacks the unmapped act: %s", raw)
	}
	e.Act = ""
	for _, f := range []func(Event) ([]byte, error){SlackPayload, TeamsPayload} {
		if raw, _ := f(e); strings.Contains(string(raw), "Acting for") {
			t.Errorf("an event without an act: %s", raw)
		}
	}
}
