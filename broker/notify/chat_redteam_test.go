package notify

import (
	"encoding/json"
	"strings"
	"testing"
)

// Text that grows when escaped (&, < and > become entities in Slack, a
// backslash escape in Teams; URLs get a zero-width space) still fits the
// channels' limits: a requester's reason, an IdP's name or a prompt's
// excerpt cannot make Slack refuse the message (invalid_blocks), which
// would keep a request, a held call or a decision out of the channel.
func TestChatCutsTextThatGrowsWhenEscaped(t *testing.T) {
	for _, unit := range []string{"&", "<", ">", "<&>", "://", "www.", `\`, "*", "\x01"} {
		long := strings.Repeat(unit, 5000)
		for _, e := range []Event{
			{Type: TypePromptHeld, Kind: "prompt", RequestID: "req_x", Subject: long, Display: long, Rule: long, Model: long, Method: long, Endpoint: long, Excerpt: long, Time: created,
				Matches: []HeldMatch{{Where: []string{long, long + "y"}, Text: long}}},
			{Type: TypeRequestPending, Kind: "access", RequestID: "req_x", Subject: long, Display: long, Reason: long, Scopes: []string{long}, TTL: long, Time: created},
			{Type: TypeRequestApproved, Kind: "access", RequestID: "req_x", Subject: long, Reviewer: long, ReviewerDisplay: long, Reason: long, Time: created, CreatedAt: created},
		} {
			raw, err := SlackPayload(e)
			if err != nil {
				t.Fatal(err)
			}
			var sm slackMessage
			json.Unmarshal(raw, &sm)
			for _, b := range sm.Blocks {
				if b.Text != nil && len([]rune(b.Text.Text)) > 3000 {
					t.Errorf("%q %s: slack text of %d runes", unit, e.Type, len([]rune(b.Text.Text)))
				}
				for _, f := range b.Fields {
					if len([]rune(f.Text)) > 2000 {
						t.Errorf("%q %s: slack field of %d runes", unit, e.Type, len([]rune(f.Text)))
					}
				}
			}
			if raw, _ := TeamsPayload(e); len(raw) > 28<<10 {
				t.Errorf("%q %s: teams card of %d bytes (Teams takes about 28 KB)", unit, e.Type, len(raw))
			}
		}
	}
}
