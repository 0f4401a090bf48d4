package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/rules"
)

// excerptBytes bounds the prompt excerpt shown to an approver.
const excerptBytes = 1024

// DefaultHoldTimeout is how long a held call waits for an approver.
const DefaultHoldTimeout = 2 * time.Minute

// applyRules runs the prompt rules and prompt masking on a model call:
// deny refuses it (403 prompt_blocked), require_approval holds it for an
// approver (403 approval_required unless released in time), and redact
// rules and prompt masking rewrite the prompt fields before anything goes
// upstream. The trail gets the forwarded prompt, masked again with the
// response masker so no detector's finding is ever stored, the SHA-256
// of the forwarded prompt, and what pamctl could not read (unscanned),
// which unscanned rules may refuse (403 unscanned_content) or hold.
// Calls to other endpoints (an endpoint: scope) carry a body pamctl does
// not inspect: it is recorded as unscanned, and refused when it is
// ambiguous JSON (whatever its Content-Type says, when it looks like JSON).
func (p *Proxy) applyRules(w http.ResponseWriter, r *http.Request) bool {
	c := callFrom(r.Context())
	in := rules.Input{Model: c.model, Endpoint: c.path}
	switch {
	case c.req != nil:
		in.Text, in.Unscanned = c.req.Text, c.req.Unscanned
	case (c.kind == epOther || c.kind.stored()) && len(bytes.TrimSpace(c.body)) > 0:
		if trimmed := bytes.TrimSpace(c.body); isJSON(r.Header.Get("Content-Type")) || trimmed[0] == '{' || trimmed[0] == '[' {
			if ae := refusedBody(payload.Validate(c.body)); ae != nil {
				p.fail(w, c, ae)
				return false
			}
		}
		in.Unscanned = []string{"body (endpoint not inspected)"}
	default:
		return true
	}
	c.unscanned = in.Unscanned
	if c.claims != nil {
		in.Subject, in.Groups = c.claims.Subject, c.claims.Groups
	}
	p.stageBegin(c, StageRules)
	res := c.Rules.Evaluate(in)
	for _, name := range res.Matched {
		c.reasons = append(c.reasons, "rule "+name)
	}
	c.rule = res.Rule

	if c.req != nil {
		forwarded := c.req.Text
		if res.Redactions > 0 || c.PromptMask.Enabled() {
			var ae *apiError
			if forwarded, ae = p.rewritePrompt(c, in, res); ae != nil {
				p.fail(w, c, ae)
				return false
			}
		}
		c.promptSHA = audit.PromptDigest(forwarded)
		c.prompt, _ = c.ResponseMask.Mask(forwarded)
	}
	p.stageEnd(c, StageRules) // a refusal above leaves it to the call's end

	switch {
	case res.Action == rules.Deny && res.Unscanned:
		p.fail(w, c, errForbidden(CodeUnscannedContent, fmt.Sprintf(
			"Prompt rule %q refuses calls with content pamctl cannot read as text (%s). Send it as text, or ask a pamctl administrator about the rule.",
			res.Rule, summarizeUnscanned(in.Unscanned))))
		return false
	case res.Action == rules.Deny:
		p.fail(w, c, errForbidden(CodePromptBlocked, fmt.Sprintf(
			"Prompt rule %q blocks this prompt. Rephrase it, or ask a pamctl administrator about the rule.", res.Rule)))
		return false
	case res.Action == rules.RequireApproval:
		if e := p.hold(r.Context(), c, in, res, callDigest(r, c.body)); e != nil {
			p.fail(w, c, e)
			return false
		}
	}
	return true
}

// isJSON reports whether a Content-Type names JSON.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// summarizeUnscanned names the first few unscanned items for a message.
func summarizeUnscanned(items []string) string {
	const show = 3
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:show], ", "), len(items)-show)
}

// rewritePrompt rewrites the prompt fields of the body: redact rules
// first, then prompt masking. It returns the prompt text as forwarded.
func (p *Proxy) rewritePrompt(c *call, in rules.Input, res rules.Result) (string, *apiError) {
	var parts []string
	counts := mask.Counts{}
	body, err := c.req.Rewrite(func(s string) string {
		if res.Redactions > 0 {
			field := in
			field.Text, field.Unscanned = s, nil
			s = c.Rules.Evaluate(field).Text
		}
		if c.PromptMask.Enabled() {
			var n mask.Counts
			s, n = c.PromptMask.Mask(s)
			counts.Add(n)
		}
		if s != "" {
			parts = append(parts, s)
		}
		return s
	})
	if err != nil {
		return "", errBadRequest(CodeInvalidJSON, "", "The request body could not be rewritten; send the same JSON you would send to OpenAI.", err)
	}
	c.body = body
	if counts.Total() > 0 {
		c.maskedIn = counts
	}
	return strings.Join(parts, "\n"), nil
}

// callDigest is HoldRequest.CallSHA256: the SHA-256 of what decides what
// the upstream does with the call besides its path (HoldRequest.Endpoint)
// and model, each preceded by its length so that no two calls share their
// bytes: the method (one path takes several: POST updates a stored
// completion, DELETE deletes it), the query string, the Content-Type and
// Content-Encoding the body is read upstream by (a multipart boundary
// picks the parts of a body pamctl does not read), and the body as it
// goes upstream.
func callDigest(r *http.Request, body []byte) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range [][]byte{[]byte(r.Method), []byte(r.URL.RawQuery),
		[]byte(strings.Join(r.Header.Values("Content-Type"), "\n")), []byte(strings.Join(r.Header.Values("Content-Encoding"), "\n")), body} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// heldExcerpt is what an approver is shown of a held prompt (the
// Excerpt, Matches and MatchSummary of a HoldRequest).
type heldExcerpt struct {
	text    string
	matches []HeldMatch
	summary string
}

// holdExcerpt is what an approver sees of a held call: the masked prompt,
// whole when short, else around each match of the rule that holds it (not
// only its start, which may be far from them; matchesExcerpt), or, for an
// unscanned rule, what pamctl could not read and the start of the prompt.
// Each piece shown around matches says where in the request they are
// (matchPlaces), on a line of its own and as data: a system message is
// not a user's, a tool's output or a turn the agent wrote as the
// assistant's. Every excerpt's text goes through audit.ExcerptText (a
// line of the prompt that reads like a place line gets one more
// backslash in front), with places or without: no prompt text reads as a
// place.
func holdExcerpt(c *call, in rules.Input, res rules.Result) heldExcerpt {
	if res.Unscanned {
		return heldExcerpt{text: audit.ExcerptText(clipMarked("[not readable by pamctl: "+summarizeUnscanned(c.unscanned)+"]\n"+c.prompt, excerptBytes))}
	}
	if len(c.prompt) <= excerptBytes {
		// Whole: every match is in it. The places of its first matches
		// (the prompt is short: counting them costs little).
		spans, _ := c.Rules.Spans(res.Rule, c.prompt, maxCountedMatches, maxCountedMatches)
		return labelled(c.prompt, matchPlaces(c, spans, placeNames(c, in)))
	}
	spans, total := c.Rules.Spans(res.Rule, c.prompt, excerptMatches, maxCountedMatches)
	switch len(spans) {
	case 0:
		return heldExcerpt{text: audit.ExcerptText(clipMarked(c.prompt, excerptBytes))}
	case 1:
		return labelled(window(c.prompt, spans[0][0], spans[0][1], excerptBytes), matchPlaces(c, spans, placeNames(c, in)))
	}
	return matchesExcerpt(c.prompt, res.Rule, spans, matchPlaces(c, spans, placeNames(c, in)), total)
}

// labelled is one piece of the prompt, text, around matches in the places
// where (none: the piece alone, as before places were shown).
func labelled(text string, where []string) heldExcerpt {
	if len(where) == 0 {
		return heldExcerpt{text: audit.ExcerptText(text)}
	}
	m := HeldMatch{Where: distinctPlaces(where), Text: text}
	return heldExcerpt{text: audit.HeldExcerpt("", []audit.HeldPiece{audit.HeldPiece(m)}), matches: []HeldMatch{m}}
}

// distinctPlaces lists where's places once each, in order, at most
// excerptMatches of them and then how many more there are.
func distinctPlaces(where []string) []string {
	var out []string
	more := 0
	for _, w := range where {
		switch {
		case slices.Contains(out, w):
		case len(out) < excerptMatches:
			out = append(out, w)
		default:
			more++
		}
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("and %d more", more))
	}
	return out
}

// placeNames is what a name the agent chose in a place (a role, a type, a
// key) goes through before an approver sees it: what the prompt's text
// went through on its way to the excerpt (redact rules and prompt masking
// on the way up, then the response masker), so no place shows what the
// excerpt hides.
func placeNames(c *call, in rules.Input) func(string) string {
	return func(s string) string {
		f := in
		f.Text, f.Unscanned = s, nil
		s = c.Rules.Evaluate(f).Text
		s, _ = c.PromptMask.Mask(s)
		s, _ = c.ResponseMask.Mask(s)
		return s
	}
}

// matchPlaces names where in the request each span of c.prompt is: the
// place (payload.Place.Where) of the text it starts in, and of the one it
// ends in when that is another. It reads the body again (it runs for a
// held call only) and finds the texts' places in the masked prompt, where
// the spans are (mask.MaskOffsets). Names the agent chose in a place
// (roles, keys) go through name (placeNames). Nil when it cannot tell: no
// parsed prompt, or a body whose text is not the masked prompt's.
func matchPlaces(c *call, spans [][2]int, name func(string) string) []string {
	if c.req == nil || len(spans) == 0 {
		return nil
	}
	text, places, err := c.req.Places(c.body)
	if err != nil || len(places) == 0 {
		return nil
	}
	starts := make([]int, len(places))
	for i, p := range places {
		starts[i] = p.Start
	}
	masked, at := c.ResponseMask.MaskOffsets(text, starts)
	if masked != c.prompt {
		return nil
	}
	in := func(off int) int { return max(sort.SearchInts(at, off+1)-1, 0) } // the last place starting at or before off
	named := map[int]string{}                                               // a short prompt's many matches share a few places
	placeName := func(i int) string {
		if _, ok := named[i]; !ok {
			named[i] = places[i].Where(name)
		}
		return named[i]
	}
	where := make([]string, len(spans))
	for i, sp := range spans {
		first, last := in(sp[0]), in(max(sp[1]-1, sp[0]))
		where[i] = placeName(first)
		if last != first {
			where[i] += " to " + placeName(last)
		}
	}
	return where
}

// A held prompt in which its rule matches more than once shows each of the
// first excerptMatches matches with matchContext bytes around it (a
// quarter before), under a line that says how long the prompt is and how
// many times the rule matched: an approver shown only the first match
// would release the others unseen (red team: "DROP TABLE scratch" shown,
// "DROP TABLE users" further down released with it).
const (
	excerptMatches    = 6
	matchContext      = 512
	maxCountedMatches = 1000
)

// matchesExcerpt renders the windows around spans (merged where they
// touch), "…" marking every cut, each after the line naming the places of
// its matches when where names them (where[i] is spans[i]'s).
func matchesExcerpt(prompt, rule string, spans [][2]int, where []string, total int) heldExcerpt {
	var sum strings.Builder
	count := strconv.Itoa(total)
	if total >= maxCountedMatches {
		count = "at least " + count
	}
	fmt.Fprintf(&sum, "prompt of %d bytes; rule %q matches %s times", len(prompt), rule, count)
	if total > len(spans) {
		fmt.Fprintf(&sum, "; the first %d are shown", len(spans))
	}
	var ex heldExcerpt
	var pieces []audit.HeldPiece
	from, to, first := -1, -1, 0 // the window, and its first span
	flush := func(next int) {
		if from < 0 {
			return
		}
		p := audit.HeldPiece{Text: marked(prompt, from, to)}
		if where != nil {
			p.Where = distinctPlaces(where[first:next])
			ex.matches = append(ex.matches, HeldMatch(p))
		}
		pieces = append(pieces, p)
	}
	for i, sp := range spans {
		f, t := windowSpan(prompt, sp[0], sp[1], matchContext)
		if from >= 0 && f <= to {
			to = max(to, t) // touches the last window: one window
			continue
		}
		flush(i)
		from, to, first = f, t, i
	}
	flush(len(spans))
	ex.text = audit.HeldExcerpt(sum.String(), pieces)
	if where != nil {
		ex.summary = sum.String()
	}
	return ex
}

// clipMarked cuts s to about n bytes, as window does: a "…" ends it when
// something was cut, so an approver knows there is more.
func clipMarked(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return clip(s, n) + "…"
}

// window cuts s to about n bytes around [start, end): a quarter of the
// room before the match, the rest after, "…" marking each cut, on rune
// boundaries.
func window(s string, start, end, n int) string {
	if len(s) <= n {
		return s
	}
	from, to := windowSpan(s, start, end, n)
	return marked(s, from, to)
}

// windowSpan is where window cuts s: [from, to), about n bytes.
func windowSpan(s string, start, end, n int) (from, to int) {
	from = max(0, start-n/4)
	if end-from > n {
		from = start // a long match: show its start
	}
	to = min(len(s), from+n)
	if to == len(s) {
		from = max(0, to-n)
	}
	for from > 0 && !utf8.RuneStart(s[from]) {
		from++
	}
	for to < len(s) && !utf8.RuneStart(s[to]) {
		to--
	}
	return from, to
}

// marked returns s[from:to], "…" marking each cut.
func marked(s string, from, to int) string {
	out := s[from:to]
	if from > 0 {
		out = "…" + out
	}
	if to < len(s) {
		out += "…"
	}
	return out
}

// hold asks an approver to release the call and waits (at most the hold
// timeout, less if the client gives up). It returns nil once released.
func (p *Proxy) hold(ctx context.Context, c *call, in rules.Input, res rules.Result, callSHA string) *apiError {
	c.decision = "hold"
	refuse := func(id, why string) *apiError {
		msg := fmt.Sprintf("Prompt rule %q holds this call for approval by %s.", res.Rule, res.Approvers)
		if id != "" && p.reviewURL != "" {
			msg += fmt.Sprintf(" It waits as %s: an approver opens %s%s (or runs `pamctl approve %s`), then send the same request again (byte for byte).", id, p.reviewURL, url.PathEscape(id), id)
		} else if id != "" {
			msg += fmt.Sprintf(" It waits as %s: an approver runs `pamctl approve %s`, then send the same request again (byte for byte).", id, id)
		}
		if why != "" {
			msg += " " + why
		}
		return errForbidden(CodeApprovalRequired, msg)
	}
	if p.holds == nil {
		return refuse("", "This proxy has no approval channel configured, so the call is refused.")
	}
	if len(c.method) > maxHoldMethod {
		return refuse("", fmt.Sprintf("Its method (%d bytes) is longer than an approver is shown (%d), so it is refused rather than held.", len(c.method), maxHoldMethod))
	}
	hctx, cancel := context.WithTimeout(ctx, p.holdTimeout)
	defer cancel()
	sha := c.promptSHA
	if len(c.unscanned) > 0 {
		// The text alone does not tell two such calls apart (an image, token
		// ids, another endpoint's body): an approval covers this body only.
		sha = audit.PromptDigest(string(c.body))
	}
	ex := holdExcerpt(c, in, res)
	p.stageBegin(c, StageHold)
	d, err := p.holds.Hold(hctx, HoldRequest{
		GrantID: c.claims.Req, Claims: c.claims, Rule: res.Rule, Approvers: res.Approvers, Approvals: res.Approvals,
		Model: c.clientModel, Method: c.method, Endpoint: c.path, Excerpt: ex.text, Matches: ex.matches, MatchSummary: ex.summary,
		PromptSHA256: sha, CallSHA256: callSHA,
	})
	p.stageEnd(c, StageHold)
	if d.ID != "" {
		c.reasons = append(c.reasons, "hold "+d.ID)
	}
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		e := refuse(d.ID, "The approval channel failed; retry later.")
		e.cause = err
		return e
	case d.Approved:
		c.decision = "allow"
		c.reasons = append(c.reasons, "released")
		return nil
	case ctx.Err() != nil:
		c.errDetail = "client gave up while the call was held"
		return refuse(d.ID, "")
	case d.Reason != "" && d.ID == "":
		// Refused at once, never held (its grant had already ended): there
		// is no hold to name.
		return errForbidden(CodeApprovalRequired, fmt.Sprintf("Prompt rule %q holds calls like this for approval by %s; this one was refused without being held: %s", res.Rule, res.Approvers, d.Reason))
	case d.Reason != "":
		// Denied, or ended with its grant: it no longer waits, and an
		// approval would not release it, so the error says why and what
		// to do (the reason does), not how to get it approved.
		return errForbidden(CodeApprovalRequired, fmt.Sprintf("Prompt rule %q held this call for approval by %s as %s, and it was refused: %s", res.Rule, res.Approvers, d.ID, d.Reason))
	}
	return refuse(d.ID, "No approver released it in time.")
}
