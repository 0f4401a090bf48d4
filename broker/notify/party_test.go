package notify

import (
	"encoding/json"
	"strings"
	"testing"
)

// Chat names the requester and the reviewer as the CLI and the web page
// do (safetext.Party): a display name holding parentheses or a look-alike
// quote is quoted, so "alice (admin@corp)" cannot read as Alice whose
// subject is admin@corp.
func TestChatQuotesDisplayNames(t *testing.T) {
	e := Event{Type: TypeRequestDenied, Kind: "access", RequestID: "req_0123", Subject: "mallory", Display: "alice (admin@corp)",
		Reviewer: "eve", ReviewerDisplay: "bob\u201d (security", Scopes: []string{"model:gpt-4o"}, Time: created, CreatedAt: created}
	raw, err := SlackPayload(e)
	if err != nil {
		t.Fatal(err)
	}
	var sm slackMessage
	if err := json.Unmarshal(raw, &sm); err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, b := range sm.Blocks {
		for _, f := range b.Fields {
			fields = append(fields, f.Text)
		}
	}
	all := strings.Join(fields, "\n")
	for _, want := range []string{"*Requester*\n`\"alice (admin@corp)\" (mallory)`", "*Denied by*\n`\"bob\u201d\u201d (security\" (eve)`"} {
		if !strings.Contains(all, want) {
			t.Errorf("slack: no %q in %q", want, all)
		}
	}

	tm := teamsMessageOf(t, e)
	facts := map[string]string{}
	for _, b := range tm.Attachments[0].Content.Body {
		for _, f := range b.Facts {
			facts[f.Title] = f.Value
		}
	}
	if got, want := facts["Requester"], `"alice \(admin@corp\)" \(mallory\)`; got != want {
		t.Errorf("teams: Requester %q, want %q", got, want)
	}
	if got, want := facts["Denied by"], "\"bob\u201d\u201d \\(security\" \\(eve\\)"; got != want {
		t.Errorf("teams: Denied by %q, want %q", got, want)
	}
}

// teamsMessageOf is e's Teams message decoded, the test failing when it cannot
// be made or read.
func teamsMessageOf(t *testing.T, e Event) teamsMessage {
	t.Helper()
	raw, err := TeamsPayload(e)
	if err != nil {
		t.Fatal(err)
	}
	var tm teamsMessage
	if err := json.Unmarshal(raw, &tm); err != nil {
		t.Fatal(err)
	}
	return tm
}
