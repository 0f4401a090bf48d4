package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden chat payloads in testdata/")

var (
	created  = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	approved = time.Date(2026, 1, 2, 3, 2, 0, 0, time.UTC)
	pageURL  = "https://pam.example.com/ui/requests/req_0123456789abcdef0123"
)

// chatEvents are one event of each kind chat channels announce.
func chatEvents() map[string]Event {
	access := Event{RequestID: "req_0123456789abcdef0123", Kind: "access", Subject: "alice", Display: "Alice Liddell",
		Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}, TTL: "30m0s", Approvals: "0/1", Reason: "nightly eval run",
		Time: approved, CreatedAt: created, URL: pageURL}
	held := Event{RequestID: "req_89abcdef0123456789ab", Kind: "prompt", Subject: "ci-agent", Rule: "destructive-sql", Model: "gpt-4o-mini",
		Method: "POST", Endpoint: "/v1/chat/completions",
		Excerpt: "[found in messages[1] (user)]\n…please DROP TABLE customers; email [EMAIL] …",
		Matches: []HeldMatch{{Where: []string{"messages[1] (user)"}, Text: "…please DROP TABLE customers; email [EMAIL] …"}}, Reason: "rule destructive-sql held a call to gpt-4o-mini", Approvals: "0/1",
		Time: approved, CreatedAt: created, URL: "https://pam.example.com/ui/requests/req_89abcdef0123456789ab"}
	at := approved
	with := func(e Event, f func(*Event)) Event { f(&e); return e }
	return map[string]Event{
		"request_pending": with(access, func(e *Event) { e.Type, e.Decision, e.Time = TypeRequestPending, "pending", created }),
		"request_pending_no_url": with(access, func(e *Event) {
			e.Type, e.Decision, e.Time, e.URL = TypeRequestPending, "pending", created, ""
		}),
		"prompt_held": with(held, func(e *Event) { e.Type, e.Decision, e.Time = TypePromptHeld, "pending", created }),
		"request_approved": with(access, func(e *Event) {
			e.Type, e.Decision, e.Reviewer, e.ReviewerDisplay, e.Reason, e.Approvals, e.ApprovedAt = TypeRequestApproved, "approved", "bob", "Bob", "ok for tonight", "1/1", &at
		}),
		"request_auto_approved": with(access, func(e *Event) {
			e.Type, e.Decision, e.Approvals, e.Time, e.ApprovedAt = TypeRequestApproved, "approved", "", created, &created
		}),
		"request_denied": with(access, func(e *Event) {
			e.Type, e.Decision, e.Reviewer, e.Reason = TypeRequestDenied, "denied", "bob", "use the mini model"
		}),
		"prompt_released": with(held, func(e *Event) {
			e.Type, e.Decision, e.Reviewer, e.Reason, e.Approvals = TypeRequestApproved, "approved", "bob", "a test database", "1/1"
		}),
		"prompt_denied": with(held, func(e *Event) { e.Type, e.Decision, e.Reviewer, e.Reason = TypeRequestDenied, "denied", "bob", "" }),
		"request_expired": with(access, func(e *Event) {
			e.Type, e.Decision, e.Time = TypeRequestExpired, "expired", created.Add(time.Hour)
		}),
		"prompt_expired": with(held, func(e *Event) { e.Type, e.Decision, e.Reason = TypeRequestExpired, "expired", "" }),
		// A held call that ended with its grant: the reason is why.
		"prompt_grant_ended": with(held, func(e *Event) {
			e.Type, e.Decision, e.Reason = TypeRequestExpired, "expired", "grant req_0123456789abcdef0123 was revoked or ended early"
		}),
		"grant_revoked": with(access, func(e *Event) {
			e.Type, e.Decision, e.Reviewer, e.ApprovedAt, e.Time = TypeGrantRevoked, "revoked", "carol", &at, approved.Add(10*time.Minute)
		}),
	}
}

// TestChatGolden compares every event's Slack and Teams payload with
// testdata/<event>.<channel>.json; -update rewrites them.
func TestChatGolden(t *testing.T) {
	for name, e := range chatEvents() {
		for channel, format := range map[string]func(Event) ([]byte, error){"slack": SlackPayload, "teams": TeamsPayload} {
			t.Run(name+"."+channel, func(t *testing.T) {
				raw, err := format(e)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, raw, "", "  "); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, raw)
				}
				pretty.WriteByte('\n')
				path := filepath.Join("testdata", name+"."+channel+".json")
				if *update {
					if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./broker/notify -run TestChatGolden -update)", err)
				}
				if !bytes.Equal(pretty.Bytes(), want) {
					t.Errorf("%s differs from the golden file (go test ./broker/notify -run TestChatGolden -update, then review the diff)\ngot:\n%s", path, pretty.Bytes())
				}
			})
		}
	}
}

// Structural promises, checked on every golden event rather than by eye.
func TestChatPayloadShapes(t *testing.T) {
	for name, e := range chatEvents() {
		raw, _ := SlackPayload(e)
		var sm map[string]any
		if err := json.Unmarshal(raw, &sm); err != nil {
			t.Fatalf("%s slack: %v", name, err)
		}
		s := string(raw)
		// Links are buttons to the page, only when there is a page; never
		// an interactive callback.
		if e.URL != "" && (!strings.Contains(s, `"type":"button"`) || !strings.Contains(s, `"url":"`+e.URL+`"`)) {
			t.Errorf("%s slack: no link button to %s: %s", name, e.URL, s)
		}
		if e.URL == "" && (strings.Contains(s, `"button"`) || strings.Contains(s, `"url"`)) {
			t.Errorf("%s slack: a button without ui.public_url: %s", name, s)
		}
		if sm["unfurl_links"] != false || strings.Contains(s, `"value"`) {
			t.Errorf("%s slack: unfurls or carries an interactive value: %s", name, s)
		}
		raw, _ = TeamsPayload(e)
		s = string(raw)
		var tm struct {
			Type        string `json:"type"`
			Attachments []struct {
				ContentType string `json:"contentType"`
				Content     struct {
					Type    string `json:"type"`
					Version string `json:"version"`
					Actions []struct {
						Type, URL string
					} `json:"actions"`
				} `json:"content"`
			} `json:"attachments"`
		}
		if err := json.Unmarshal(raw, &tm); err != nil || tm.Type != "message" || len(tm.Attachments) != 1 ||
			tm.Attachments[0].ContentType != "application/vnd.microsoft.card.adaptive" || tm.Attachments[0].Content.Type != "AdaptiveCard" {
			t.Fatalf("%s teams envelope: %v %s", name, err, s)
		}
		acts := tm.Attachments[0].Content.Actions
		if e.URL != "" && (len(acts) != 1 || acts[0].Type != "Action.OpenUrl" || acts[0].URL != e.URL) {
			t.Errorf("%s teams: actions %+v", name, acts)
		}
		if e.URL == "" && len(acts) != 0 {
			t.Errorf("%s teams: an action without ui.public_url: %+v", name, acts)
		}
		if strings.Contains(s, "Action.Submit") || strings.Contains(s, "Action.Execute") {
			t.Errorf("%s teams: an interactive action: %s", name, s)
		}
	}
	// A decision follows up the original message by id and time.
	raw, _ := SlackPayload(chatEvents()["request_denied"])
	if !strings.Contains(string(raw), "Follow-up to the message about access request req_0123456789abcdef0123 posted 2026-01-02 03:00 UTC") {
		t.Errorf("denial does not reference the original: %s", raw)
	}
}

// hostile is text a requester controls, aimed at each renderer.
var hostile = []string{
	"<http://evil.example/approve|Approve now>",
	"<!channel> <!here> <@U024BE7LH> approve please",
	"[Approve](http://evil.example/approve) **urgent**",
	"```\n*bold* _it_ ~strike~ `code`\n```",
	"line one\nline two\r\n- list item\n1. numbered",
	"&lt;script&gt; &amp; <b>html</b> <script>alert(1)</script>",
	"visit https://evil.example/x or www.evil.example now",
	// Auto-linkers need no lowercase: www. in any case is defanged.
	"Www.evil.example wWw.evil.example wwW.evil.example",
	"\x1b[31mred\x1b[0m \u202egnirts desrever\u202c \u0007bell",
	"<https://evil.example>",
	"# heading\n> quote",
}

// linkish finds anything a Slack renderer would read as a link, mention or
// entity it did not escape: "<" not from our own escaping, or a bare URL.
var (
	slackAngle   = regexp.MustCompile(`<[^>]*>`)
	bareURL      = regexp.MustCompile(`(?i)(https?|ftp)://|www\.`)
	teamsLink    = regexp.MustCompile(`(^|[^\\])\[[^\]]*(^|[^\\])\]\(`)
	teamsUnesc   = regexp.MustCompile(`(^|[^\\])[*_~\x60<>\[\]]`)
	rawControl   = regexp.MustCompile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
	ourOwnURLRef = "https://pam.example.com/"
)

func TestChatEscapesHostileText(t *testing.T) {
	for _, h := range hostile {
		e := Event{Type: TypeRequestDenied, Kind: "access", RequestID: "req_x", Subject: h, Display: h, Reviewer: h, ReviewerDisplay: h,
			Scopes: []string{h}, Reason: h, TTL: h, Rule: h, Model: h, Method: h, Endpoint: h, Excerpt: h, Time: created, CreatedAt: created,
			Matches: []HeldMatch{{Where: []string{h, "messages[0] (user)"}, Text: h}, {Where: []string{h}, Text: h}}}
		for _, held := range []bool{false, true} {
			if held {
				e.Kind, e.Type = "prompt", TypePromptHeld
			}
			raw, err := SlackPayload(e)
			if err != nil {
				t.Fatal(err)
			}
			var sm slackMessage
			if err := json.Unmarshal(raw, &sm); err != nil {
				t.Fatal(err)
			}
			texts := []string{sm.Text}
			for _, b := range sm.Blocks {
				if b.Text != nil {
					texts = append(texts, b.Text.Text)
					if b.Text.Type == "mrkdwn" && !b.Text.Verbatim {
						t.Errorf("mrkdwn without verbatim (Slack would auto-link): %+v", b.Text)
					}
				}
				for _, f := range b.Fields {
					texts = append(texts, f.Text)
					if !f.Verbatim {
						t.Errorf("field without verbatim: %+v", f)
					}
				}
			}
			for _, tx := range texts {
				if m := slackAngle.FindString(tx); m != "" {
					t.Errorf("slack: %q survives as markup in %q (input %q)", m, tx, h)
				}
				if m := bareURL.FindString(tx); m != "" {
					t.Errorf("slack: a live URL %q in %q (input %q)", m, tx, h)
				}
				if rawControl.MatchString(tx) {
					t.Errorf("slack: a raw control character in %q (input %q)", tx, h)
				}
				// Untrusted values sit in code spans: no backtick of theirs
				// may close one early.
				if strings.Count(tx, "`")%2 != 0 {
					t.Errorf("slack: unbalanced backticks in %q (input %q)", tx, h)
				}
			}

			tm := teamsMessageOf(t, e)
			card := tm.Attachments[0].Content
			var tt []string
			for _, b := range card.Body {
				tt = append(tt, b.Text)
				for _, f := range b.Facts {
					tt = append(tt, f.Value)
				}
			}
			for _, tx := range tt {
				if teamsLink.MatchString(tx) {
					t.Errorf("teams: a markdown link in %q (input %q)", tx, h)
				}
				if m := teamsUnesc.FindString(tx); m != "" {
					t.Errorf("teams: unescaped markup %q in %q (input %q)", m, tx, h)
				}
				if bareURL.MatchString(tx) {
					t.Errorf("teams: a live URL in %q (input %q)", tx, h)
				}
				if strings.ContainsAny(tx, "\r\n") || rawControl.MatchString(tx) {
					t.Errorf("teams: a line break or control character in %q (input %q)", tx, h)
				}
				if regexp.MustCompile(`^([-+*]\s|\d+[.)])`).MatchString(tx) {
					t.Errorf("teams: text starts a list: %q", tx)
				}
			}
			for _, a := range card.Actions {
				if a.URL != "" && !strings.HasPrefix(a.URL, ourOwnURLRef) {
					t.Errorf("teams: action to %q", a.URL)
				}
			}
		}
	}
}

// A held call's message says which method it was sent with, next to its
// path; one whose proxy did not say (older than the method field) says
// so rather than show a method.
func TestChatShowsTheHeldCallsMethod(t *testing.T) {
	for method, want := range map[string]string{"DELETE": "DELETE /v1/chat/completions/x", "": "(method not reported) /v1/chat/completions/x"} {
		e := Event{Type: TypePromptHeld, Kind: "prompt", RequestID: "req_x", Subject: "ci", Rule: "r", Model: "gpt-4o", Method: method, Endpoint: "/v1/chat/completions/x", Time: created}
		raw, _ := SlackPayload(e)
		if !strings.Contains(string(raw), "*Call*\\n`"+want+"`") {
			t.Errorf("slack message for method %q lacks %q: %s", method, want, raw)
		}
		tm := teamsMessageOf(t, e)
		found := false
		for _, b := range tm.Attachments[0].Content.Body {
			for _, f := range b.Facts {
				found = found || f.Title == "Call" && f.Value == teamsText(want, maxChatName)
			}
		}
		if !found {
			t.Errorf("teams card for method %q lacks %q: %s", method, want, raw)
		}
	}
}

// A held call's message lists where the rule matched (each place once) as
// a fact of its own, apart from the excerpt's text, in which a prompt
// could write a line that looks like one; a call whose excerpt names no
// place has no such fact.
func TestChatListsWhereTheRuleMatched(t *testing.T) {
	e := Event{Type: TypePromptHeld, Kind: "prompt", RequestID: "req_x", Subject: "ci", Rule: "r", Model: "gpt-4o", Time: created,
		Excerpt: "[found in messages[0] (system)]\n…a…\n[found in messages[0] (system); messages[2] (assistant)]\n…b…",
		Matches: []HeldMatch{{Where: []string{"messages[0] (system)"}, Text: "…a…"}, {Where: []string{"messages[0] (system)", "messages[2] (assistant)"}, Text: "…b…"}}}
	raw, _ := SlackPayload(e)
	if !strings.Contains(string(raw), "*Found in*\\n`messages[0] (system); messages[2] (assistant)`") {
		t.Errorf("slack: %s", raw)
	}
	raw, _ = TeamsPayload(e)
	if !strings.Contains(string(raw), `{"title":"Found in","value":"messages\\[0\\] \\(system\\); messages\\[2\\] \\(assistant\\)"}`) {
		t.Errorf("teams: %s", raw)
	}
	e.Matches = nil
	for _, f := range []func(Event) ([]byte, error){SlackPayload, TeamsPayload} {
		if raw, _ := f(e); strings.Contains(string(raw), "Found in") {
			t.Errorf("a place without matches: %s", raw)
		}
	}
}

// Long untrusted text is cut, so a message stays within Slack's and
// Teams's limits (Slack: 3000 characters per text, 2000 per field).
func TestChatCutsLongText(t *testing.T) {
	long := strings.Repeat("é", 10000)
	e := Event{Type: TypePromptHeld, Kind: "prompt", RequestID: "req_x", Subject: long, Rule: long, Model: long, Method: long, Endpoint: long, Excerpt: long, Reason: long,
		Matches: []HeldMatch{{Where: []string{long, long, long}, Text: long}, {Where: []string{long + "x"}, Text: long}},
		Scopes:  []string{long}, Time: created}
	raw, _ := SlackPayload(e)
	var sm slackMessage
	json.Unmarshal(raw, &sm)
	for _, b := range sm.Blocks {
		if b.Text != nil && len([]rune(b.Text.Text)) > 3000 {
			t.Errorf("slack text of %d runes", len([]rune(b.Text.Text)))
		}
		for _, f := range b.Fields {
			if len([]rune(f.Text)) > 2000 {
				t.Errorf("slack field of %d runes", len([]rune(f.Text)))
			}
		}
	}
	if raw, _ := TeamsPayload(e); len(raw) > 28<<10 {
		t.Errorf("teams card of %d bytes (Teams takes about 28 KB)", len(raw))
	}
}

// A chat webhook posts the formatted body with the usual headers, and an
// error from the endpoint names neither the URL nor its secret.
func TestChatWebhookPostsAndRedacts(t *testing.T) {
	rec := &recorder{}
	srv := server(t, rec)
	for channel, format := range map[string]func(Event) ([]byte, error){"slack": SlackPayload, "teams": TeamsPayload} {
		w := newWebhook(srv.URL+"/services/T000/B000/XXXXSECRETXXXX", rec)
		w.Format = format
		e := chatEvents()["request_pending"]
		if err := w.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		body, hdr := rec.bodies[len(rec.bodies)-1], rec.headers[len(rec.headers)-1]
		rec.mu.Unlock()
		want, _ := format(e)
		if !bytes.Equal(body, want) {
			t.Errorf("%s: posted\n%s\nwant\n%s", channel, body, want)
		}
		if hdr.Get("Content-Type") != "application/json" || hdr.Get("User-Agent") != "pamctl-notify" || hdr.Get("X-Pamctl-Event") != TypeRequestPending {
			t.Errorf("%s headers: %v", channel, hdr)
		}
	}

	// Slack answers errors with a code in the body; the code is kept, an
	// answer echoing the URL is not.
	for _, c := range []struct {
		status int
		body   string
		want   string
	}{
		{404, "no_service", "404 Not Found (no_service)"},
		{403, "invalid_token", "403 Forbidden (invalid_token)"},
		{400, "bad webhook https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX", "400 Bad Request"},
		// A bare piece of the URL has the shape of a code: still not kept.
		{404, "XXXXSECRETXXXX", "404 Not Found"},
		{404, "B000", "404 Not Found (B000)"},
	} {
		hook := httptestServer(t, c.status, c.body)
		rec := &recorder{}
		w := newWebhook(hook+"/services/T000/B000/XXXXSECRETXXXX", rec)
		w.Format = SlackPayload
		_ = w.Send(context.Background(), chatEvents()["request_pending"])
		w.Close()
		rec.mu.Lock()
		if len(rec.failures) != 1 {
			t.Fatalf("failures: %v", rec.failures)
		}
		msg := rec.failures[0].Error()
		rec.mu.Unlock()
		if !strings.HasSuffix(msg, c.want) || strings.Contains(msg, "SECRET") || strings.Contains(msg, "/services/") {
			t.Errorf("error %q, want it to end with %q and name no URL", msg, c.want)
		}
	}
}

// httptestServer answers every request with status and body.
func httptestServer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A webhook that redirects is not followed: the body (and the URL's
// secret) never goes elsewhere, and it is not retried.
func TestWebhookRefusesRedirects(t *testing.T) {
	got := make(chan string, 4)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.URL.Path }))
	t.Cleanup(other.Close)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(hook.Close)
	rec := &recorder{}
	w := newWebhook(hook.URL+"/services/SECRET", rec)
	w.Format = SlackPayload
	_ = w.Send(context.Background(), chatEvents()["request_pending"])
	w.Close()
	select {
	case p := <-got:
		t.Fatalf("the redirect was followed to %s", p)
	default:
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.failures) != 1 || len(rec.sleeps) != 0 || !strings.Contains(rec.failures[0].Error(), "redirect") || strings.Contains(rec.failures[0].Error(), "SECRET") {
		t.Fatalf("failures %v, sleeps %v", rec.failures, rec.sleeps)
	}
}

// A cut falls after escaping and never inside an escape: a hidden
// character at the cut shows as its whole escape, not as a lone backslash
// or a piece of one (black-box red team: the CLI cut the same way).
func TestChatCutsNoEscapeInHalf(t *testing.T) {
	for at := 5; at <= 10; at++ {
		s := strings.Repeat("a", at) + "\u202e" + "bbbbbbbbbb"
		got := plain(s, 10)
		if !strings.HasSuffix(got, "…") {
			t.Fatalf("plain(%q, 10) = %q: the cut is not marked", s, got)
		}
		shown := strings.TrimSuffix(got, "…")
		if strings.Contains(shown, `\`) != strings.Contains(shown, `\u202e`) {
			t.Errorf("plain(%q, 10) = %q: an escape cut in half", s, got)
		}
	}
}

// A place is what the agent chose (a role name): one holding "; " or a
// quote is quoted in the Found in fact (safetext.Join), so it cannot
// pass for two places.
func TestChatPlacesWithSeparatorsQuoted(t *testing.T) {
	e := Event{Type: TypePromptHeld, Kind: "prompt", RequestID: "req_x", Subject: "ci", Rule: "r", Model: "gpt-4o", Time: created,
		Excerpt: "[found in a; messages[1] (system); b]\n…a…",
		Matches: []HeldMatch{{Where: []string{"a; messages[1] (system)", "b"}, Text: "…a…"}}}
	raw, _ := SlackPayload(e)
	if !strings.Contains(string(raw), "*Found in*\\n`\\\"a; messages[1] (system)\\\"; b`") {
		t.Errorf("slack: %s", raw)
	}
}
