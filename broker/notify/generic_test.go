package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// toolEvents are the generic webhook's events about a held tool call.
func toolEvents() map[string]Event {
	held := Event{RequestID: "req_89abcdef0123456789ab", Kind: "prompt", Subject: "ci-agent",
		Scopes: []string{"gpt-4o", "tool:shell", "rule:rm-needs-security"}, Rule: "rm-needs-security", Model: "gpt-4o", Tool: "shell",
		Excerpt: `tool "shell" arguments: {"commands":["rm -rf /srv/cache"]}`, Approvals: "0/1",
		Time: created, CreatedAt: created, URL: "https://pam.example.com/ui/requests/req_89abcdef0123456789ab"}
	released := held
	released.Type, released.Decision, released.Reviewer, released.Reason, released.Approvals, released.Time = TypeRequestApproved, "approved", "bob", "cache only", "1/1", approved
	held.Type, held.Decision, held.Reason = TypePromptHeld, "pending", "rule rm-needs-security held a tool call gpt-4o proposed"
	return map[string]Event{"tool_held": held, "tool_released": released}
}

// TestGenericGolden compares what the generic webhook posts about a held
// tool call with testdata/<event>.generic.json (-update rewrites them): its
// text names the tool.
func TestGenericGolden(t *testing.T) {
	for name, e := range toolEvents() {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			w := newWebhook(server(t, rec).URL, rec)
			if err := w.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			w.Shutdown(context.Background())
			if len(rec.bodies) != 1 {
				t.Fatalf("%d deliveries", len(rec.bodies))
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, rec.bodies[0], "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", name+".generic.json")
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./broker/notify -run TestGenericGolden -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("%s differs from the golden file (go test ./broker/notify -run TestGenericGolden -update, then review the diff)\ngot:\n%s", path, pretty.Bytes())
			}
			var got Event
			if err := json.Unmarshal(rec.bodies[0], &got); err != nil || !strings.Contains(got.Text, ` of tool "shell" `) || got.Tool != "shell" {
				t.Errorf("the text does not name the tool: %v %q", err, got.Text)
			}
		})
	}
}

// A tool name is the model's text: quoted as the trail and the web page
// quote it (audit.Quote: raw, a quote doubled), escaped once as the CLI
// and the web page show text (safetext.Escape: a look-alike letter shows
// as itself, a bidi control as \u202e), cut, and unable to forge markup
// or lines in the summary.
func TestSummaryQuotesToolName(t *testing.T) {
	for tool, want := range map[string]string{
		"mcp:github/delete_repo":       `pamctl: prompt.held r-1 of tool "mcp:github/delete_repo": pending`,
		"sh\u0435ll":                   "pamctl: prompt.held r-1 of tool \"sh\u0435ll\": pending",
		"x\n<!channel> <https://e|ok>": `pamctl: prompt.held r-1 of tool "x\n&lt;!channel&gt; &lt;https:` + "\u200b" + `//e|ok&gt;": pending`,
		`a"b`:                          `pamctl: prompt.held r-1 of tool "a""b": pending`,
		"\u202eshell":                  `pamctl: prompt.held r-1 of tool "\u202eshell": pending`,
		`\u202eshell`:                  `pamctl: prompt.held r-1 of tool "\\u202eshell": pending`,
		"caf\u00e9 & <b>":              "pamctl: prompt.held r-1 of tool \"caf\u00e9 &amp; &lt;b&gt;\": pending",
	} {
		if got := (Event{Type: TypePromptHeld, RequestID: "r-1", Decision: "pending", Tool: tool}).Summary(); got != want {
			t.Errorf("%q: got %s, want %s", tool, got, want)
		}
	}
	long := (Event{Type: TypePromptHeld, Tool: strings.Repeat("é", 200)}).Summary()
	if !strings.HasSuffix(long, `"…`) || len(long) > 1000 {
		t.Errorf("long name: %s", long)
	}
}

// The summary shows a tool name as the web page's excerpt line shows it
// (tool "…" arguments:), letter for letter: the same quoting, the same
// escapes.
func TestSummaryToolNameAsThePageShowsIt(t *testing.T) {
	for _, tool := range []string{"sh\u0435ll", "\u202eshell\u200b", `say "hi"`, `C:\tools\x`, "\U000e0061x", "ｓｈｅｌｌ"} {
		got := (Event{Type: TypePromptHeld, RequestID: "r-1", Tool: tool}).Summary()
		page := safetext.Escape(audit.Quote(tool))
		if !strings.Contains(got, " of tool "+page) {
			t.Errorf("%q: the summary %q does not show the tool as the page does, %s", tool, got, page)
		}
	}
}

// The summary's subject and reviewer are others' words inside pamctl's
// parentheses and words: one holding a parenthesis, a quote or a
// look-alike of one is quoted (safetext.Value), so no subject closes the
// reviewer's parentheses early.
func TestSummaryQuotesSubjects(t *testing.T) {
	e := Event{Type: TypeRequestDenied, RequestID: "r-1", Subject: "bob (alice)", Decision: "denied", Reviewer: "eve) (reviewer alice"}
	want := `pamctl: request.denied r-1 by "bob (alice)": denied (reviewer "eve) (reviewer alice")`
	if got := e.Summary(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	e = Event{Type: TypeRequestDenied, RequestID: "r-1", Subject: "alice", Decision: "denied", Reviewer: "bob"}
	if got, want := e.Summary(), `pamctl: request.denied r-1 by alice: denied (reviewer bob)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// The generic webhook's text is for chat (Slack, Mattermost, Teams and
// Discord display it, rendering Markdown and mentions): a requester's
// reason, a subject or a tool name cannot make a link there, named
// ([Approve](https://…)) or bare (https://…, www.…), nor a channel-wide
// mention (@channel, @here, @all, @everyone) — as in the Slack and Teams
// messages.
func TestSummaryFormsNoLinkOrMention(t *testing.T) {
	for _, h := range []string{
		"[Approve now](https://evil.example/approve)",
		"[Approve][1]\n[1]: https://evil.example",
		"see http://evil.example or WWW.evil.example or Www.evil.example",
		"@channel @here please, @all @everyone",
		"![img](https://evil.example/pixel.png)",
	} {
		e := Event{Type: TypeRequestPending, RequestID: "r-1", Subject: h, Scopes: []string{h}, Decision: "pending", Reason: h, Tool: h, Reviewer: h}
		got := e.Summary()
		if m := regexp.MustCompile(`(?i)(https?|ftp)://|www\.`).FindString(got); m != "" {
			t.Errorf("a live URL %q in %q", m, got)
		}
		if strings.Contains(got, "](") || strings.Contains(got, "]:") {
			t.Errorf("a Markdown link in %q", got)
		}
		if m := regexp.MustCompile(`(^|[^\p{L}\p{N}_.])@(channel|here|all|everyone)\b`).FindString(got); m != "" {
			t.Errorf("a mention %q in %q", m, got)
		}
	}
}
