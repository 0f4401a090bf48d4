package notify

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/safetext"
)

// Chat messages (Slack, Teams) say what happened and link to the item's
// page, where approvers decide behind the IdP login: the only action in a
// message is a link button, and nothing in chat can approve. Incoming
// webhooks cannot edit a message they posted, so a decision or an expiry is
// a follow-up message that names the original (the request's id and when it
// was posted) rather than an update of it.
//
// Every value in a message that a requester, an IdP or a prompt chose
// (names, scopes, reasons, rule names, models, excerpts) is escaped for the
// channel: it can neither add lines, nor form links or mentions, nor
// format the text around it.

// Limits on untrusted values in chat messages, in runes: long values are
// cut with "…".
const (
	maxChatName    = 200
	maxChatScopes  = 500
	maxChatReason  = 1000
	maxChatExcerpt = 600
)

// chatItem is what both chat formats say about an event.
type chatItem struct {
	Emoji    string // Slack header emoji shortcode
	Title    string // ours: never contains untrusted text
	Pending  bool   // someone must act: the button says Review
	FollowUp string // for a decision or expiry: which message it follows ("" for the first)
	Facts    []chatFact
	Reason   string // untrusted, raw
	Excerpt  string // untrusted, raw (masked by the proxy)
	When     string
	URL      string
}

type chatFact struct {
	Title   string // ours
	Value   string // untrusted, raw, unless Trusted
	Trusted bool   // pamctl's own value (a request id, a count): shown as is in Teams
}

func chatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// itemOf describes e for chat.
func itemOf(e Event) chatItem {
	held := e.Kind == "prompt" || e.Type == TypePromptHeld
	noun := "Access request"
	if held {
		noun = "Held call"
	}
	it := chatItem{URL: e.URL, When: chatTime(e.Time)}
	// People as the CLI and the web page name them: a display name (or a
	// subject) holding a parenthesis or a quote is quoted.
	who := safetext.Party(e.Display, e.Subject)
	reviewer := safetext.Party(e.ReviewerDisplay, e.Reviewer)
	switch e.Type {
	case TypeRequestPending:
		it.Emoji, it.Title, it.Pending = ":hourglass_flowing_sand:", "Access request waiting for approval", true
	case TypePromptHeld:
		it.Emoji, it.Title, it.Pending = ":raised_hand:", "Held call waiting for approval", true
	case TypeRequestApproved:
		it.Emoji = ":white_check_mark:"
		switch {
		case held:
			it.Title = "Held call released"
		case reviewer == "":
			it.Title = "Access granted by policy (no approval needed)"
		default:
			it.Title = "Access request approved"
		}
	case TypeRequestDenied:
		it.Emoji, it.Title = ":no_entry:", noun+" denied"
	case TypeRequestExpired:
		it.Emoji, it.Title = ":alarm_clock:", noun+" expired without a decision"
		switch {
		case e.ApprovedAt != nil:
			it.Title = "Grant ended: the policies no longer allow it"
		case held && e.Reason != "":
			// A held call has no reason of its own: this is why it ended
			// (its grant did), and nobody can release it now.
			it.Title = "Held call ended: its grant ended"
		}
	case TypeGrantRevoked:
		it.Emoji, it.Title = ":octagonal_sign:", "Grant revoked"
	case TypeBreakGlass:
		it.Emoji, it.Title = ":rotating_light:", "Break-glass approval"
	default:
		it.Emoji, it.Title = ":information_source:", "pamctl event "+strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r == '.' || r == '_' {
				return r
			}
			return -1
		}, e.Type)
	}
	// A message about an item that was announced before follows it up,
	// naming it by id and time (both pamctl's own: the text is trusted).
	if !it.Pending && validID.MatchString(e.RequestID) && !(e.Type == TypeRequestApproved && reviewer == "" && !held) && !e.CreatedAt.IsZero() {
		it.FollowUp = fmt.Sprintf("Follow-up to the message about %s %s posted %s", strings.ToLower(noun), e.RequestID, chatTime(e.CreatedAt))
		if e.ApprovedAt != nil && (e.Type == TypeGrantRevoked || e.Type == TypeRequestExpired) {
			it.FollowUp = fmt.Sprintf("Follow-up to the messages about access request %s (posted %s, approved %s)", e.RequestID, chatTime(e.CreatedAt), chatTime(*e.ApprovedAt))
		}
	}
	add := func(title, v string) {
		if v != "" {
			it.Facts = append(it.Facts, chatFact{Title: title, Value: v})
		}
	}
	add("Requester", who)
	if e.Act != "" || e.ActFor != "" {
		// Whose CI run this is: the platform's login, and the person
		// act_people says it is. Either may hold " = ": quoted then.
		act := safetext.Join([]string{e.Act}, " = ", "")
		if e.ActFor != "" {
			act += " = " + safetext.Join([]string{e.ActFor}, " = ", "")
		}
		add("Acting for", act)
	}
	if held {
		add("Rule", e.Rule)
		add("Model", e.Model)
		if e.Endpoint != "" {
			method := e.Method
			if method == "" {
				method = methodNotReported
			}
			add("Call", method+" "+e.Endpoint)
		}
		// Where the rule matched, apart from the excerpt's text (in which
		// a prompt could write a line that looks like a place).
		var places []string
		for _, m := range e.Matches {
			for _, w := range m.Where {
				if !slices.Contains(places, w) {
					places = append(places, w)
				}
			}
		}
		add("Found in", safetext.Join(places, "; ", "")) // a place holding "; " is quoted
	} else {
		add("Scopes", strings.Join(e.Scopes, " "))
		add("TTL", e.TTL)
	}
	if (it.Pending || e.Type == TypeRequestApproved) && validApprovals.MatchString(e.Approvals) {
		it.Facts = append(it.Facts, chatFact{Title: "Approvals", Value: e.Approvals, Trusted: true})
	}
	if e.Type == TypeRequestApproved || e.Type == TypeRequestDenied || e.Type == TypeGrantRevoked {
		add(map[string]string{TypeRequestApproved: "Approved by", TypeRequestDenied: "Denied by", TypeGrantRevoked: "Revoked by"}[e.Type], reviewer)
	}
	if validID.MatchString(e.RequestID) {
		it.Facts = append(it.Facts, chatFact{Title: "Request", Value: e.RequestID, Trusted: true})
	} else {
		add("Request", e.RequestID)
	}
	it.Reason = e.Reason
	if held && e.Type == TypePromptHeld {
		it.Reason = "" // the notifier's own "rule … held a call" line; the facts say it
	}
	if held {
		it.Excerpt = e.Excerpt
	}
	return it
}

// methodNotReported stands for the method of a held call whose proxy did
// not send it (broker.MethodNotReported): never a guessed one.
const methodNotReported = "(method not reported)"

// validID and validApprovals are the shapes of pamctl's own values, shown
// as they are; anything else is treated as untrusted text.
var (
	validID        = regexp.MustCompile(`^req_[0-9a-f]{1,64}$`)
	validApprovals = regexp.MustCompile(`^[0-9]{1,4}/[0-9]{1,4}$`)
)

// defang keeps a URL in untrusted text from becoming a link: a zero-width
// space after the scheme's colon and in "www." in any case (the text reads
// the same; auto-linkers no longer see a URL).
func defang(s string) string {
	return linkish.ReplaceAllStringFunc(s, func(m string) string {
		if m == "://" {
			return ":\u200b//"
		}
		return m[:3] + "\u200b."
	})
}

var linkish = regexp.MustCompile(`(?i)://|www\.`)

// plain is untrusted text made one line, with control characters, bidi
// overrides, ANSI escapes and invisible characters shown rather than
// obeyed (safetext.Escape, as the CLI and the web page show them), URLs
// defanged and cut to about n runes: after escaping, never inside an
// escape (safetext.Clip).
func plain(s string, n int) string { return defang(safetext.Escape(safetext.Clip(s, n, false))) }

// Slack mrkdwn: &, < and > are the only characters that form entities,
// links (<http://x|click>) and mentions (<!channel>, <@U123>); escaped, they
// show as themselves. A backtick would end the code span an untrusted value
// sits in, so it becomes a look-alike (ˋ). Text objects are sent with
// verbatim: true, so Slack does not auto-link URLs or names either.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "`", "ˋ")

// slackCode is an untrusted value as Slack inline code.
func slackCode(s string, n int) string {
	if s == "" {
		return "-"
	}
	return "`" + slackEscape(s, n) + "`"
}

// slackBlock is an untrusted text as a Slack code block.
func slackBlock(s string, n int) string {
	return "```" + slackEscape(s, n) + "```"
}

// slackEscape is plain(s, n) escaped for Slack, and at most 2n runes:
// entities make &, < and > five and four runes long, and Slack refuses a
// whole message whose text is over its limits (3000 a section, 2000 a
// field), so text made of them is cut sooner, never inside an entity.
func slackEscape(s string, n int) string {
	var b strings.Builder
	used := 0
	for _, r := range plain(s, n) {
		e := slackEscaper.Replace(string(r))
		k := utf8.RuneCountInString(e)
		if used+k > 2*n-1 {
			b.WriteString("…")
			break
		}
		b.WriteString(e)
		used += k
	}
	return b.String()
}

type slackText struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Emoji    *bool  `json:"emoji,omitempty"`
	Verbatim bool   `json:"verbatim,omitempty"`
}

type slackElement struct {
	Type     string     `json:"type"`
	Text     *slackText `json:"text,omitempty"`
	URL      string     `json:"url,omitempty"`
	ActionID string     `json:"action_id,omitempty"`
	Style    string     `json:"style,omitempty"`
}

type slackBlockKit struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []any       `json:"elements,omitempty"`
}

type slackMessage struct {
	Text        string          `json:"text"`
	Blocks      []slackBlockKit `json:"blocks"`
	UnfurlLinks bool            `json:"unfurl_links"`
	UnfurlMedia bool            `json:"unfurl_media"`
}

func mrkdwn(s string) *slackText { return &slackText{Type: "mrkdwn", Text: s, Verbatim: true} }

// SlackPayload formats e as a Slack incoming-webhook message (Block Kit):
// a header, the facts, the reason or the masked excerpt, a context line
// (and, for a decision or an expiry, which message it follows up), and a
// link button to the item's page when e.URL is set. It has no interactive
// element: the button is a plain link.
func SlackPayload(e Event) ([]byte, error) {
	it := itemOf(e)
	yes := true
	msg := slackMessage{
		// The notification text (push, unread list) names only our title
		// and the request id, escaped like everything else.
		Text: slackEscaper.Replace("pamctl: " + it.Title + " (" + plain(e.RequestID, maxChatName) + ")"),
	}
	msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "header", Text: &slackText{Type: "plain_text", Text: it.Emoji + " " + it.Title, Emoji: &yes}})
	var fields []slackText
	for _, f := range it.Facts {
		n := maxChatName
		if f.Title == "Scopes" || f.Title == "Found in" {
			n = maxChatScopes
		}
		fields = append(fields, *mrkdwn("*" + f.Title + "*\n" + slackCode(f.Value, n)))
	}
	if len(fields) > 0 {
		msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "section", Fields: fields})
	}
	if it.Reason != "" {
		msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "section", Text: mrkdwn("*Reason*\n" + slackBlock(it.Reason, maxChatReason))})
	}
	if it.Excerpt != "" {
		msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "section", Text: mrkdwn("*Prompt excerpt (masked)*\n" + slackBlock(it.Excerpt, maxChatExcerpt))})
	}
	ctx := "pamctl · " + it.When
	if it.FollowUp != "" {
		ctx = it.FollowUp + " · " + ctx
	}
	if it.URL == "" && it.Pending {
		ctx += " · decide with `pamctl approve` or `pamctl deny`"
	}
	msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "context", Elements: []any{mrkdwn(slackEscaper.Replace(ctx))}})
	if it.URL != "" {
		label, style := "Open in pamctl", ""
		if it.Pending {
			label, style = "Review in pamctl", "primary"
		}
		msg.Blocks = append(msg.Blocks, slackBlockKit{Type: "actions", Elements: []any{slackElement{
			Type: "button", Text: &slackText{Type: "plain_text", Text: label}, URL: it.URL, ActionID: "pamctl_open", Style: style,
		}}})
	}
	return json.Marshal(msg)
}

// Teams renders a subset of Markdown in TextBlocks and FactSet values:
// emphasis (* _), links ([text](url)), lists (a line starting "- ", "* ",
// "1. ") and headings. Each of those characters in untrusted text is
// escaped with a backslash; < and > too, for renderers that read HTML.
var teamsEscaper = strings.NewReplacer(
	`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`,
	"`", "\\`", "~", `\~`, "<", `\<`, ">", `\>`, "#", `\#`, "|", `\|`, "!", `\!`,
)

// teamsListMarker is a list marker at the start of a text: "- ", "+ ",
// "1. ", "2) ".
var teamsListMarker = regexp.MustCompile(`^(?:[-+](\s|$)|\d+[.)])`)

// teamsText is untrusted text for a Teams TextBlock or fact value.
func teamsText(s string, n int) string {
	t := teamsEscaper.Replace(plain(s, n))
	return teamsListMarker.ReplaceAllStringFunc(t, func(m string) string {
		if m[0] == '-' || m[0] == '+' {
			return `\` + m // \- item
		}
		return m[:len(m)-1] + `\` + m[len(m)-1:] // 1\. item
	})
}

type teamsElement struct {
	Type     string      `json:"type"`
	Text     string      `json:"text,omitempty"`
	Weight   string      `json:"weight,omitempty"`
	Size     string      `json:"size,omitempty"`
	Wrap     bool        `json:"wrap,omitempty"`
	IsSubtle bool        `json:"isSubtle,omitempty"`
	FontType string      `json:"fontType,omitempty"`
	Spacing  string      `json:"spacing,omitempty"`
	Facts    []teamsFact `json:"facts,omitempty"`
}

type teamsFact struct {
	Title string `json:"title"`
	Value string `json:"value"`
}

type teamsAction struct {
	Type  string `json:"type"`
	Title string `json:"title"`
	URL   string `json:"url"`
	Style string `json:"style,omitempty"`
}

type teamsCard struct {
	Schema  string            `json:"$schema"`
	Type    string            `json:"type"`
	Version string            `json:"version"`
	Body    []teamsElement    `json:"body"`
	Actions []teamsAction     `json:"actions,omitempty"`
	MSTeams map[string]string `json:"msteams"`
}

type teamsAttachment struct {
	ContentType string    `json:"contentType"`
	ContentURL  *string   `json:"contentUrl"`
	Content     teamsCard `json:"content"`
}

type teamsMessage struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

// TeamsPayload formats e as an Adaptive Card (1.4) in the message envelope
// Teams incoming webhooks and Workflows ("Post to a channel when a webhook
// request is received") accept: a title, the facts, the reason or the
// masked excerpt, a context line, and an Action.OpenUrl to the item's page
// when e.URL is set. It has no Action.Submit or Action.Execute: nothing in
// Teams can decide.
func TeamsPayload(e Event) ([]byte, error) {
	it := itemOf(e)
	card := teamsCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard", Version: "1.4",
		MSTeams: map[string]string{"width": "Full"}}
	card.Body = append(card.Body, teamsElement{Type: "TextBlock", Text: it.Title, Weight: "Bolder", Size: "Medium", Wrap: true})
	if it.FollowUp != "" {
		card.Body = append(card.Body, teamsElement{Type: "TextBlock", Text: it.FollowUp, IsSubtle: true, Wrap: true, Spacing: "None"})
	}
	var facts []teamsFact
	for _, f := range it.Facts {
		n := maxChatName
		if f.Title == "Scopes" || f.Title == "Found in" {
			n = maxChatScopes
		}
		v := teamsText(f.Value, n)
		if f.Trusted {
			v = f.Value
		}
		facts = append(facts, teamsFact{Title: f.Title, Value: v})
	}
	if len(facts) > 0 {
		card.Body = append(card.Body, teamsElement{Type: "FactSet", Facts: facts})
	}
	if it.Reason != "" {
		card.Body = append(card.Body,
			teamsElement{Type: "TextBlock", Text: "Reason", Weight: "Bolder", Wrap: true},
			teamsElement{Type: "TextBlock", Text: teamsText(it.Reason, maxChatReason), Wrap: true, Spacing: "None"})
	}
	if it.Excerpt != "" {
		card.Body = append(card.Body,
			teamsElement{Type: "TextBlock", Text: "Prompt excerpt (masked)", Weight: "Bolder", Wrap: true},
			teamsElement{Type: "TextBlock", Text: teamsText(it.Excerpt, maxChatExcerpt), Wrap: true, FontType: "Monospace", Spacing: "None"})
	}
	ctx := "pamctl · " + it.When
	if it.URL == "" && it.Pending {
		ctx += " · decide with pamctl approve or pamctl deny"
	}
	card.Body = append(card.Body, teamsElement{Type: "TextBlock", Text: teamsEscaper.Replace(ctx), IsSubtle: true, Size: "Small", Wrap: true})
	if it.URL != "" {
		label, style := "Open in pamctl", ""
		if it.Pending {
			label, style = "Review in pamctl", "positive"
		}
		card.Actions = []teamsAction{{Type: "Action.OpenUrl", Title: label, URL: it.URL, Style: style}}
	}
	return json.Marshal(teamsMessage{Type: "message", Attachments: []teamsAttachment{{
		ContentType: "application/vnd.microsoft.card.adaptive", Content: card,
	}}})
}
