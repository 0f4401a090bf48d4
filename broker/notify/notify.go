// Package notify tells people about access events (a request waiting for
// approval, a grant approved, denied or revoked, a prompt held by a rule)
// by POSTing JSON to a webhook: pamctl's own event JSON, a Slack Block Kit
// message (SlackPayload) or a Teams Adaptive Card (TeamsPayload). Chat
// messages only link to the item's page: decisions are never taken in chat.
//
// Delivery is asynchronous: Send puts the event on a bounded queue and
// returns at once, whatever the endpoint does; one worker goroutine posts
// events in order, retrying network errors, 5xx, 408 and 429 with
// exponential backoff. An event that cannot be delivered (queue full,
// notifier closed, last attempt failed, 4xx) is handed to OnFailure, so the
// broker can write it to the audit trail. Errors never contain the webhook
// URL, which often embeds a secret (Slack, Teams).
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// Event types.
const (
	TypeRequestPending  = "request.pending"  // a request waits for approval
	TypeRequestApproved = "request.approved" // approval complete; the grant is live
	TypeRequestDenied   = "request.denied"   // a reviewer denied the request
	TypeRequestExpired  = "request.expired"  // nobody reviewed it within pending_ttl
	TypeBreakGlass      = "request.break_glass"
	TypeGrantRevoked    = "grant.revoked"
	TypePromptHeld      = "prompt.held" // a require_approval rule holds a proxied call
)

// Event is one notification. Its JSON field names are a stable contract for
// webhook receivers.
type Event struct {
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Subject   string    `json:"subject"`
	Scopes    []string  `json:"scopes"`
	Decision  string    `json:"decision"`
	Reviewer  string    `json:"reviewer"`
	Reason    string    `json:"reason"`
	// Text is a one-line summary for chat webhooks (Slack, Mattermost and
	// Teams display "text"); Send fills it from Summary when empty, and
	// makes any Text safe to display (see SafeText).
	Text string `json:"text"`

	// Kind is "access" (a request for scopes) or "prompt" (a held call).
	Kind string `json:"kind,omitempty"`
	// Display is the requester's display name (the IdP's; never used for
	// decisions), ReviewerDisplay the reviewer's.
	Display         string `json:"display,omitempty"`
	ReviewerDisplay string `json:"reviewer_display,omitempty"`
	// Act is who a workload requester acts for (its issuer's act_claim:
	// the login that triggered a CI run), ActFor the person the issuer's
	// act_people maps it to; empty for people.
	Act    string `json:"act,omitempty"`
	ActFor string `json:"act_for,omitempty"`
	// TTL is the grant's lifetime asked for; Approvals the distinct
	// approvals so far and needed, e.g. "1/2".
	TTL       string `json:"ttl,omitempty"`
	Approvals string `json:"approvals,omitempty"`
	// Rule, Model and Excerpt describe a held call: the rule that held it,
	// the model, and the (masked) prompt around the match.
	Rule    string `json:"rule,omitempty"`
	Model   string `json:"model,omitempty"`
	Excerpt string `json:"excerpt,omitempty"`
	// Matches are the excerpt's pieces, each with the places in the call
	// the rule matched in it ("messages[2] (system)"); empty when the
	// excerpt names none (a tool call, an unscanned rule, a call held by
	// a proxy older than this field). Chat messages list the places.
	Matches []HeldMatch `json:"matches,omitempty"`
	// Method and Endpoint are the HTTP method and path of a held call;
	// Method is empty when the proxy that held it did not say (chat
	// messages then show the method as not reported).
	Method   string `json:"method,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// Tool names the tool of a held tool call (a tool_call rule held a
	// call the model proposed, docs/tools.md), as scopes name it ("shell",
	// "mcp:github/delete_repo"); empty for a held prompt. The model chose
	// it: it is untrusted text.
	Tool string `json:"tool,omitempty"`
	// CreatedAt is when the request was made (the first message about it);
	// ApprovedAt when it was approved, if it was.
	CreatedAt  time.Time  `json:"created_at,omitzero"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	// URL is the item's page in pamctl's web UI (empty when the UI is off).
	URL string `json:"url,omitempty"`
}

// HeldMatch is a piece of a held prompt's excerpt and where in the call
// the rule matched in it (broker.HeldMatch).
type HeldMatch struct {
	Where []string `json:"where"`
	Text  string   `json:"text"`
}

// Summary renders e as one line for people, e.g.
// "pamctl: request.pending r-1 by alice@example.com for model:gpt-4o: pending",
// or for a held tool call
// `pamctl: prompt.held r-2 of tool "shell" by ci for …: pending - rule …`.
// Every field may hold text a requester (or a model) chose (subject,
// reason, tool), so each goes through SafeText: the line stays one line
// and cannot forge markup.
func (e Event) Summary() string {
	var b strings.Builder
	b.WriteString("pamctl: ")
	b.WriteString(SafeText(e.Type))
	if e.RequestID != "" {
		b.WriteString(" " + SafeText(e.RequestID))
	}
	if e.Tool != "" {
		b.WriteString(" of tool " + SafeText(quoteTool(e.Tool))) // as the page's excerpt line shows it: raw in quotes, escaped once
	}
	if e.Subject != "" {
		b.WriteString(" by " + SafeText(safetext.Value(e.Subject, "()")))
	}
	if len(e.Scopes) > 0 {
		b.WriteString(" for " + SafeText(strings.Join(e.Scopes, " ")))
	}
	if e.Decision != "" {
		b.WriteString(": " + SafeText(e.Decision))
	}
	if e.Reviewer != "" {
		b.WriteString(" (reviewer " + SafeText(safetext.Value(e.Reviewer, "()")) + ")")
	}
	if e.Reason != "" {
		b.WriteString(" - " + SafeText(e.Reason))
	}
	return b.String()
}

// chatEscaper escapes what Slack, Mattermost and Teams read as markup in
// "text": <https://evil|Approve> links, <!channel> mentions, entities.
var chatEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// quoteTool quotes a tool name as the trail and the web page's excerpt
// line quote it (audit.Quote: raw between double quotes, a quote
// doubled), at most maxToolName bytes of it: the summary then escapes it
// once (SafeText), so a look-alike letter shows as itself and a bidi
// control as \u202e, as the CLI and the page show them. (Go's
// strconv.QuoteToASCII, used before, showed a Cyrillic е as \u0435 here
// only.)
func quoteTool(name string) string {
	if len(name) <= maxToolName {
		return audit.Quote(name)
	}
	cut := maxToolName
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return audit.Quote(name[:cut]) + "…"
}

// maxToolName bounds the tool name a summary shows.
const maxToolName = 128

// SafeText makes s safe for a chat message: control characters, ANSI
// escapes, bidi overrides and line breaks are escaped (safetext.Escape),
// characters that render as nothing are shown as \u escapes too,
// &, <, > become entities, URLs are defanged, and Markdown links and
// @-mentions are broken by a zero-width space, so data can neither add
// lines, reorder the text nor forge links and mentions. The JSON fields
// other than Text keep the exact values.
func SafeText(s string) string { return chatSafe(safetext.Escape(s)) }

// chatSafe is SafeText for text escaped already (safetext.Escape, or
// quoted in printable ASCII): escaping twice would double backslashes,
// so an escape would read as text typed.
func chatSafe(s string) string {
	s = defang(chatEscaper.Replace(s))
	return mention.ReplaceAllString(markdownLink.Replace(s), "${1}@\u200b${2}")
}

// markdownLink and mention break, with a zero-width space, what Markdown
// renderers (Mattermost, Teams, Discord) read as a link ([text](url), an
// image ![](url), a reference [1]: url) or a mention (@channel, @here,
// @all, @user) at the start of a word; an address (alice@example.com)
// stays as it is.
var (
	markdownLink = strings.NewReplacer("](", "]\u200b(", "]:", "]\u200b:")
	mention      = regexp.MustCompile(`(^|[^\p{L}\p{N}_.])@([\p{L}\p{N}])`)
)

var (
	// ErrQueueFull is reported when Send drops an event because the queue is full.
	ErrQueueFull = errors.New("notify: queue full; event dropped")
	// ErrClosed is reported for events sent after Close, or still queued
	// when the drain deadline passed.
	ErrClosed = errors.New("notify: notifier closed; event dropped")
)

// StatusError is a non-2xx answer from the webhook. Detail is the answer's
// body only when it is a short error code of letters, digits and
// underscores (Slack answers "no_service", "invalid_token",
// "channel_not_found") that is no piece of the URL or of a header sent;
// anything else, which might echo the URL or a token, is left out.
type StatusError struct {
	Code   int
	Detail string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("notify: webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// errorCode returns body when it is a short machine error code.
func errorCode(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || len(b) > 64 {
		return ""
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return ""
		}
	}
	return string(b)
}

// notSecret is code unless it is a piece of the webhook URL or of a header
// value sent (a code-shaped answer may echo the URL's secret path segment
// or a token), from 6 bytes up: shorter codes are Slack's words, not
// secrets.
func notSecret(code, target string, h http.Header) string {
	if len(code) < 6 {
		return code
	}
	if strings.Contains(target, code) {
		return ""
	}
	for _, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, code) {
				return ""
			}
		}
	}
	return code
}

// Defaults for the zero values of Webhook's fields.
const (
	DefaultAttempts     = 5
	DefaultBackoff      = time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultTimeout      = 10 * time.Second
	DefaultQueueSize    = 256
	DefaultDrainTimeout = 5 * time.Second
)

// Webhook posts events to URL. Configure it with a struct literal; the
// worker starts on first use. The zero values of the tunables mean the
// defaults above. A Webhook must not be copied after first use.
type Webhook struct {
	URL string
	// Resolve, when set, gives the URL for each delivery instead of URL:
	// read from a file or the vault, so the secret is not kept in the
	// config and a rotated URL is used without a restart. Its errors must
	// not contain the URL.
	Resolve func(ctx context.Context) (string, error)
	// Format turns an event into the request body; nil posts the Event
	// as JSON. SlackPayload and TeamsPayload format chat messages.
	Format func(Event) ([]byte, error)
	// Client defaults to one that follows no redirect (a webhook that
	// redirects is refused rather than sent the body elsewhere); each
	// attempt has Timeout.
	Client *http.Client
	// Header is added to every request, e.g. an Authorization header.
	Header http.Header
	// Secret, when set, signs each body: X-Pamctl-Signature is
	// "sha256=" + hex(HMAC-SHA256(Secret, timestamp + "." + body)), with the
	// Unix timestamp in X-Pamctl-Timestamp.
	Secret []byte

	Attempts   int           // total attempts per event
	Backoff    time.Duration // wait before the 2nd attempt; doubles each time
	MaxBackoff time.Duration // cap on one wait (also on Retry-After)
	Timeout    time.Duration // per attempt
	QueueSize  int           // events waiting beyond the one in flight
	// DrainTimeout bounds Close.
	DrainTimeout time.Duration

	// Sleep waits d or until ctx is done; tests inject one that does not sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now stamps events that have no Time, and signatures.
	Now func() time.Time
	// OnFailure receives every event that will not be delivered, with why.
	// It may be called from the worker and from Send, concurrently; it must
	// not block for long.
	OnFailure func(Event, error)
	// OnDelivered, when set, is told of every event the endpoint accepted
	// (so a caller tracking failures knows when they end). Same rules as
	// OnFailure.
	OnDelivered func(Event)

	once   sync.Once
	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan Event
	ctx    context.Context // cancelled when a drain deadline passes
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *Webhook) start() {
	w.once.Do(func() {
		if w.Attempts <= 0 {
			w.Attempts = DefaultAttempts
		}
		if w.Backoff <= 0 {
			w.Backoff = DefaultBackoff
		}
		if w.MaxBackoff <= 0 {
			w.MaxBackoff = DefaultMaxBackoff
		}
		if w.Timeout <= 0 {
			w.Timeout = DefaultTimeout
		}
		if w.QueueSize <= 0 {
			w.QueueSize = DefaultQueueSize
		}
		if w.DrainTimeout <= 0 {
			w.DrainTimeout = DefaultDrainTimeout
		}
		if w.Client == nil {
			w.Client = &http.Client{CheckRedirect: noRedirects}
		}
		if w.Sleep == nil {
			w.Sleep = sleep
		}
		if w.Now == nil {
			w.Now = time.Now
		}
		w.queue = make(chan Event, w.QueueSize)
		w.ctx, w.cancel = context.WithCancel(context.Background())
		w.done = make(chan struct{})
		go w.run()
	})
}

// Send queues e for delivery and returns at once; it never waits for the
// network. If the queue is full or the notifier closed, e is dropped, passed
// to OnFailure, and ErrQueueFull or ErrClosed returned. ctx is not used for
// delivery, which outlives the caller's request; it is accepted so Send fits
// the broker's notifier interface.
func (w *Webhook) Send(ctx context.Context, e Event) error {
	w.start()
	if e.Time.IsZero() {
		e.Time = w.Now()
	}
	e.Scopes = slices.Clone(e.Scopes)
	if e.Scopes == nil {
		e.Scopes = []string{}
	}
	if e.Text == "" {
		e.Text = e.Summary()
	} else {
		e.Text = safetext.Escape(e.Text) // markup in a caller's own Text is the caller's
	}
	err := w.enqueue(e)
	if err != nil {
		w.fail(e, err)
	}
	return err
}

func (w *Webhook) enqueue(e Event) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.queue <- e:
		return nil
	default:
		return ErrQueueFull
	}
}

// Close stops accepting events and waits up to DrainTimeout for the queue
// to drain (see Shutdown).
func (w *Webhook) Close() error {
	w.start()
	ctx, cancel := context.WithTimeout(context.Background(), w.DrainTimeout)
	defer cancel()
	return w.Shutdown(ctx)
}

// Shutdown stops accepting events and delivers those queued until ctx is
// done. Then the attempt in flight is aborted and every event not delivered
// is passed to OnFailure with ErrClosed; Shutdown returns once the worker
// has stopped. It returns ctx's error if the queue did not drain in time.
func (w *Webhook) Shutdown(ctx context.Context) error {
	w.start()
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		w.cancel()
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return fmt.Errorf("notify: drain: %w", ctx.Err())
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for e := range w.queue {
		if err := w.deliver(e); err != nil {
			w.fail(e, err)
		} else if w.OnDelivered != nil {
			w.OnDelivered(e)
		}
	}
}

func (w *Webhook) fail(e Event, err error) {
	if w.OnFailure != nil {
		w.OnFailure(e, boundedErr(err))
	}
}

// maxErrorBytes bounds the error OnFailure receives (logged, and written
// to the notify.failed audit event).
const maxErrorBytes = 512

// boundedErr is err with its text cut to maxErrorBytes when it is longer
// (safetext.CutError). Its text stays raw: the notify.failed event holds
// it as data, and every view of the trail (and the log's handlers)
// escapes it once where a person reads it.
func boundedErr(err error) error { return safetext.CutError(err, maxErrorBytes) }

// errRedirect: a webhook answers where it is; a redirect is not followed.
var errRedirect = errors.New("the webhook answered with a redirect, which pamctl does not follow")

func noRedirects(*http.Request, []*http.Request) error { return errRedirect }

// deliver posts e, retrying transient failures.
func (w *Webhook) deliver(e Event) error {
	format := w.Format
	if format == nil {
		format = func(e Event) ([]byte, error) { return json.Marshal(e) }
	}
	body, err := format(e)
	if err != nil {
		return fmt.Errorf("notify: encode event: %w", err)
	}
	for attempt := 1; ; attempt++ {
		if w.ctx.Err() != nil {
			return ErrClosed
		}
		wait, err := w.post(e.Type, body)
		if err == nil {
			return nil
		}
		if wait < 0 || attempt >= w.Attempts {
			return fmt.Errorf("notify: gave up after %d attempt(s): %w", attempt, err)
		}
		wait = max(wait, w.backoff(attempt))
		if err := w.Sleep(w.ctx, min(wait, w.MaxBackoff)); err != nil {
			return ErrClosed
		}
	}
}

// backoff is the wait after the given failed attempt: Backoff doubling, capped.
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.Backoff
	for i := 1; i < attempt && d < w.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, w.MaxBackoff)
}

// post makes one attempt. On failure, wait is -1 when retrying is pointless,
// else a minimum wait the server asked for (Retry-After), possibly 0.
func (w *Webhook) post(typ string, body []byte) (wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.Timeout)
	defer cancel()
	target := w.URL
	if w.Resolve != nil {
		if target, err = w.Resolve(ctx); err != nil {
			return -1, fmt.Errorf("notify: webhook url: %w", err)
		}
		if err := CheckURL(target); err != nil {
			return -1, fmt.Errorf("notify: webhook url: %w", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		// The URL is bad; say so without echoing it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return -1, fmt.Errorf("notify: webhook url: %w", err)
	}
	for k, vs := range w.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pamctl-notify")
	req.Header.Set("X-Pamctl-Event", typ)
	if len(w.Secret) > 0 {
		ts := strconv.FormatInt(w.Now().Unix(), 10)
		req.Header.Set("X-Pamctl-Timestamp", ts)
		req.Header.Set("X-Pamctl-Signature", Sign(w.Secret, ts, body))
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold a secret: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, errRedirect) {
			return -1, fmt.Errorf("notify: post: %w", err)
		}
		return 0, fmt.Errorf("notify: post: %w", err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = &StatusError{Code: resp.StatusCode, Detail: notSecret(errorCode(answer), target, req.Header)}
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return retryAfter(resp.Header.Get("Retry-After")), err
	default:
		return -1, err
	}
}

// CheckURL checks a webhook URL without ever echoing it (it holds a
// secret): an absolute https URL, or http to a loopback address (tests,
// a local relay).
func CheckURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return errors.New("is empty")
	case err != nil || u.Host == "" || u.Opaque != "":
		return errors.New("is not an absolute URL (https://host/path)")
	case u.User != nil:
		return errors.New("carries user info")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("uses http:// off loopback; a webhook URL is a secret: use https://")
	default:
		return errors.New("is not an https:// URL")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// retryAfter parses a Retry-After header given in seconds; dates and junk
// count as no preference. A number of seconds too large for a Duration is
// the longest wait (which MaxBackoff caps), never an overflow.
func retryAfter(v string) time.Duration {
	secs, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange), err == nil && secs > uint64(math.MaxInt64/time.Second):
		return math.MaxInt64
	case err != nil:
		return 0
	}
	return time.Duration(secs) * time.Second
}

// Sign returns the X-Pamctl-Signature value for body sent at timestamp ts
// (Unix seconds, as in X-Pamctl-Timestamp). Receivers recompute it and
// compare with hmac.Equal.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
