// Package proxy is pamctl's OpenAI-compatible gateway: an http.Handler that
// accepts only pamctl access tokens, enforces the grant's scope and limits,
// applies prompt rules and masking, swaps the token for the vaulted provider
// key, forwards to an upstream (streams pass through event by event) and
// writes one audit event per call before the client sees the end of the
// answer.
//
// The handler is begin (the call's scope, its audit event at the end)
// around a row of checks, one per concern, run in order while each lets
// the call go on, sharing one per-request scope (call) in the context:
//
//	begin -> checkHost -> authenticate -> limit -> route -> readBody -> authorize -> applyRules -> prepare -> endpoint
//
// where endpoint is the reverse proxy (Rewrite, ModifyResponse, an
// ErrorHandler; a model stream's answer is taken from it and written by
// relayStream), the filtered model list, or the trace ingest. It depends only on the broker's leaf packages broker/token and
// broker/audit, and on its own subpackages.
//
// Behaviour worth knowing:
//
//   - Verified tokens are cached by SHA-256 until their exp (bounded, see
//     Options.CacheSize); revocation and expiry are still checked on every
//     call, against the injected clock.
//   - Nothing is read from a request body before the caller is known and
//     charged: the Host header, the token and the grant's limits (the lim
//     claim: a token bucket of RPM requests per minute and a budget of
//     upstream-reported tokens, charged for every call) come first. Bodies
//     then draw on a proxy-wide in-flight byte budget (Options.MaxInflight)
//     and must arrive within Options.BodyTimeout. The budget is checked
//     when a call is admitted, so calls in flight when it runs out may
//     overshoot it. With Options.Counters the counters survive a restart.
//   - Calls refused before authentication are counted per source network
//     (IPv4 /24, IPv6 /64) and written at the end of each minute as at
//     most 32 proxy.refused events (the busiest networks, the rest summed
//     as "other"), so a flood without a token, from however many
//     addresses, cannot fill the trail; every field of every proxy event
//     is size-capped (capEvent).
//   - A chat stream whose request lacks stream_options.include_usage is
//     sent upstream with it set, so streamed usage counts against the
//     budget; the usage-only final chunk is then dropped before it reaches
//     the client, who gets exactly the stream it asked for.
//   - Of the client's request headers only an allowlist goes upstream
//     (headers.go: what the OpenAI SDKs send, and an upstream's
//     ForwardHeaders), never a name that is hop-by-hop, pamctl's own, or
//     names an account, an identity, a credential, a client address, a
//     route, API version or model, a logging switch, a cache control,
//     trace context or a timeout, or is under a gateway's or provider's
//     control namespace (X-Portkey-*, Helicone-*, Cf-*, ...).
//   - If an audit event cannot be appended the proxy fails closed: a
//     buffered answer becomes 503 audit_unavailable, a stream ends with an
//     error event instead of its terminal event.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/rules"
)

// KeySource hands out vaulted provider keys. The proxy asks for the key on
// every forwarded call, so a `pamctl vault set` takes effect at once; the
// value is never logged, audited or sent to a client. An error wrapping
// ErrProviderKeyUnavailable means the key could not be read just now (503,
// retry: the store did not answer); any other error, or an empty key,
// means nothing usable is vaulted under that name (502: an administrator
// must set it).
type KeySource interface {
	ProviderKey(ctx context.Context, vaultEntry string) (string, error)
}

// ErrProviderKeyUnavailable marks a KeySource error that a retry may cure.
var ErrProviderKeyUnavailable = errors.New("the provider key could not be read just now")

// AuditSink stores audit events; when Append returns nil the event is
// durable. Every audit.Sink is one.
type AuditSink interface {
	Append(ctx context.Context, e *audit.Event) error
}

// Upstream is one OpenAI-compatible provider.
type Upstream struct {
	// Name routes model:NAME/model scopes and "NAME/model" model names to
	// this upstream; the first upstream is the default for unqualified names.
	Name string
	// URL is the API base including its version path, e.g.
	// https://api.openai.com/v1; /v1/X on the proxy goes to URL + /X.
	URL string
	// KeyName is the vault entry holding the provider key (default: Name).
	KeyName string
	// Organization and Project, when set, are sent as OpenAI-Organization and
	// OpenAI-Project; whatever the client sent in those headers is dropped.
	Organization string
	Project      string
	// ForwardHeaders are client headers this upstream gets besides the
	// built-in ones (headers.go: what the OpenAI SDKs send); New refuses
	// a name that is hop-by-hop or framing, pamctl's own, or built in
	// already, one that names a credential, a client address, a route,
	// model or deployment, an organization, project or billing account,
	// or another class of forwardRefusal, and one under a vendor's control
	// namespace (headers.go).
	ForwardHeaders []string
	// KeyHeader is the header the vaulted key goes in: "" (or
	// Authorization) sends "Authorization: Bearer <key>"; any other name
	// carries the key alone, for gateways that want it there (Azure
	// OpenAI: api-key; Azure API Management: Ocp-Apim-Subscription-Key;
	// Portkey: x-portkey-api-key). No Authorization goes then.
	KeyHeader string
	// ExtraKey, when set, sends a second vaulted key in a header of its
	// own (a gateway's key beside the provider's).
	ExtraKey *ExtraKey
	// Timeout bounds the wait for the upstream's response headers (default
	// 10 minutes, as the OpenAI SDKs). Streams may then run as long as they
	// like; a client that disconnects cancels the upstream call.
	Timeout time.Duration
	// Transport overrides the HTTP transport (tests, custom TLS). When nil
	// the proxy clones http.DefaultTransport and sets Timeout as its
	// ResponseHeaderTimeout.
	Transport http.RoundTripper
}

// ExtraKey is a second vaulted key an upstream gets: the value of vault
// entry KeyName, alone, in header Header.
type ExtraKey struct {
	Header  string
	KeyName string
}

// DefaultUpstream is used when Options.Upstreams is empty: OpenAI, with
// the key vaulted as "openai".
func DefaultUpstream() Upstream {
	return Upstream{Name: "openai", URL: "https://api.openai.com/v1", KeyName: "openai"}
}

// Defaults for Options.
const (
	DefaultMaxBody         = 8 << 20
	DefaultUpstreamTimeout = 10 * time.Minute
	DefaultCacheSize       = 4096
	DefaultSummaryBytes    = 4 << 10
	// DefaultInflightBodies is how many maximum-size bodies the default
	// in-flight budget holds: MaxInflight defaults to this × MaxBody.
	DefaultInflightBodies = 8
	DefaultBodyTimeout    = 30 * time.Second
	// maxResponseBody bounds a non-streamed answer of a model call the
	// proxy buffers to mask it (docs/performance.md: memory budget);
	// maxOtherBody bounds other buffered answers (embeddings, granted
	// endpoints), which are only scanned for usage.
	maxResponseBody = 16 << 20
	maxOtherBody    = 64 << 20
)

// Options configure a Proxy. Verifier, Keys and Audit are required.
type Options struct {
	// Verifier checks access tokens; use a *token.Verifier with Audience
	// token.AudienceProxy and Use token.UseAccess.
	Verifier TokenVerifier
	// Revoked is asked on every call (nil: no revocations).
	Revoked RevocationList
	// Keys holds the provider keys.
	Keys KeySource
	// Upstreams, the first being the default (DefaultUpstream when empty).
	Upstreams []Upstream
	// Audit receives one proxy.call event per call and one trace.span event
	// per ingested span.
	Audit AuditSink
	// Logger gets one line per call (default slog.Default()).
	Logger *slog.Logger
	// MaxBody bounds request bodies (default 8 MiB); larger ones get 413.
	MaxBody int64
	// MaxInflight bounds the request-body bytes all calls together may
	// hold (default DefaultInflightBodies × MaxBody; never below MaxBody).
	// A body is reserved by its Content-Length, or as it is read when it is
	// chunked, and released when its call ends; a call that cannot reserve
	// gets 503 proxy_busy at once. One grant may hold at most half of it
	// (never less than one MaxBody); beyond that its calls get 429
	// too_many_concurrent_bodies.
	MaxInflight int64
	// BodyTimeout bounds the time a client may take to send a request
	// body (default 30 s); a slower one gets 408 request_timeout.
	BodyTimeout time.Duration
	// AllowedHosts, when not empty, are the names the proxy answers to in
	// the Host header: "name" (any port) or "name:port". Anything else gets
	// 421 host_not_allowed, so a web page that rebinds its own hostname to
	// the proxy's address cannot use it. Empty (and AllowIPHosts false)
	// accepts every Host.
	AllowedHosts []string
	// AllowIPHosts also accepts every Host that is an IP address (with any
	// port): a browser sends one only for a page served from that address,
	// which DNS rebinding cannot fake.
	AllowIPHosts bool
	// Counters persists limit counters across restarts (nil: memory only).
	Counters CounterStore
	// Now is the clock for token expiry and limits (default time.Now).
	Now func() time.Time
	// CacheSize bounds the verified-token cache (default 4096 tokens;
	// negative disables it).
	CacheSize int
	// Rules are the prompt rules (nil: none).
	Rules *rules.Engine
	// PromptMask masks prompt text on its way up; ResponseMask masks
	// answers on their way down, trace spans, and the prompt copy kept in
	// the trail. Nil masks nothing.
	PromptMask   *mask.Masker
	ResponseMask *mask.Masker
	// Holds decides calls a prompt rule sends for approval; nil refuses
	// them with 403 approval_required.
	Holds Holder
	// HoldTimeout bounds how long a held call waits (default 2 minutes).
	HoldTimeout time.Duration
	// ReviewURL, when set, is the web approval page's address of held
	// calls without the id (<ui.public_url>/ui/requests/): a held call's
	// refusal names its page, <ReviewURL><id>.
	ReviewURL string
	// SummaryBytes is how much of each answer (masked) the audit event
	// keeps: default DefaultSummaryBytes, at most payload.SummaryBytes.
	SummaryBytes int
	// Observer watches every call at its stage boundaries (metrics,
	// tracing); nil observes nothing and costs nothing.
	Observer Observer
}

// Inspection is what the proxy looks for in calls: prompt rules and the
// maskers of each direction. A nil field turns that inspection off.
type Inspection struct {
	Rules        *rules.Engine
	PromptMask   *mask.Masker
	ResponseMask *mask.Masker
}

// SetInspection swaps rules and maskers (config reload). Calls in flight
// finish with the inspection they started with.
func (p *Proxy) SetInspection(in Inspection) { p.inspect.Store(&in) }

// Proxy is the gateway handler.
type Proxy struct {
	log          *slog.Logger
	now          func() time.Time
	tokens       *verifyCache
	revoked      RevocationList
	keys         KeySource
	sink         AuditSink
	holds        Holder
	inspect      atomic.Pointer[Inspection]
	holdTimeout  time.Duration
	reviewURL    string // Options.ReviewURL
	summaryBytes int
	limits       *limiter
	maxBody      int64
	inflight     byteBudget
	bodyTimeout  time.Duration
	hosts        hostSet
	refused      *refusals
	ups          []*upstream
	byName       map[string]*upstream
	handler      http.Handler
	checks       []check   // what serveCall runs before the endpoint
	known        knownKeys // vaulted keys scrubbed from answers and the trail
	obs          Observer
}

var _ http.Handler = (*Proxy)(nil)

// New validates opts and builds the handler chain.
func New(opts Options) (*Proxy, error) {
	var problems []string
	if opts.Verifier == nil {
		problems = append(problems, "a token verifier is required")
	}
	if opts.Keys == nil {
		problems = append(problems, "a provider key source is required")
	}
	if opts.Audit == nil {
		problems = append(problems, "an audit sink is required")
	}
	p := &Proxy{
		log: opts.Logger, now: opts.Now, revoked: opts.Revoked, keys: opts.Keys, holds: opts.Holds, maxBody: opts.MaxBody, byName: map[string]*upstream{},
		holdTimeout: opts.HoldTimeout, summaryBytes: opts.SummaryBytes, obs: opts.Observer, reviewURL: opts.ReviewURL,
	}
	if opts.Audit != nil {
		// Every event passes the key scrub on its way to the trail.
		p.sink = scrubbingSink{p: p, next: opts.Audit}
	}
	if p.summaryBytes <= 0 {
		p.summaryBytes = DefaultSummaryBytes
	}
	p.summaryBytes = min(p.summaryBytes, payload.SummaryBytes)
	p.SetInspection(Inspection{Rules: opts.Rules, PromptMask: opts.PromptMask, ResponseMask: opts.ResponseMask})
	if p.holdTimeout <= 0 {
		p.holdTimeout = DefaultHoldTimeout
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = slog.New(&keyScrubHandler{next: p.log.Handler(), keys: &p.known.cur})
	if p.now == nil {
		p.now = time.Now
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBody
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	p.tokens = newVerifyCache(opts.Verifier, p.now, size)
	if p.obs != nil {
		p.tokens.observe = p.obs.TokenVerified
	}
	p.limits = newLimiter(p.now, opts.Counters)
	p.inflight.max = opts.MaxInflight
	if p.inflight.max <= 0 {
		p.inflight.max = DefaultInflightBodies * p.maxBody
	}
	p.inflight.max = max(p.inflight.max, p.maxBody+1)
	p.inflight.perGrant = max(p.inflight.max/2, p.maxBody+1)
	p.bodyTimeout = opts.BodyTimeout
	if p.bodyTimeout <= 0 {
		p.bodyTimeout = DefaultBodyTimeout
	}
	hosts, err := newHostSet(opts.AllowedHosts, opts.AllowIPHosts)
	if err != nil {
		problems = append(problems, err.Error())
	}
	p.hosts = hosts
	p.refused = &refusals{window: DefaultRefusalWindow, now: p.now, flushF: p.writeRefusals}
	ups := opts.Upstreams
	if len(ups) == 0 {
		ups = []Upstream{DefaultUpstream()}
	}
	for i, u := range ups {
		up, err := p.newUpstream(u)
		if err != nil {
			problems = append(problems, fmt.Sprintf("upstream %d: %v", i+1, err))
			continue
		}
		if _, dup := p.byName[up.name]; dup {
			problems = append(problems, fmt.Sprintf("upstream %d: name %q is used twice", i+1, up.name))
			continue
		}
		p.byName[up.name] = up
		p.ups = append(p.ups, up)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("proxy: %s", strings.Join(problems, "; "))
	}
	p.checks = []check{p.checkHost, p.authenticate, p.limit, p.route, p.readBody, p.authorize, p.applyRules, p.prepare}
	p.handler = p.begin(http.HandlerFunc(p.serveCall))
	return p, nil
}

// A check is one step of a call before it goes upstream: it reports
// whether the call goes on, having answered the client when it does not.
//
// The checks run one after the other, not as nested middleware: every
// frame of a chain of handlers stays on the stack under a stream for as
// long as it runs, and a goroutine keeps the stack its deepest moment
// needed. Flat, a streaming call holds 2.3 KiB less stack while it waits
// on the upstream (docs/performance.md).
type check func(http.ResponseWriter, *http.Request) bool

// serveCall runs the checks in order, then the endpoint.
func (p *Proxy) serveCall(w http.ResponseWriter, r *http.Request) {
	for _, ok := range p.checks {
		if !ok(w, r) {
			return
		}
	}
	p.endpoint(w, r)
}

// ServeHTTP implements http.Handler. Health checks are the listener's
// business (pamctl serve mounts /healthz and /readyz beside the proxy).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.handler.ServeHTTP(w, r)
}

// begin installs the call scope, answers with the request id, and makes
// sure every call that did not write its own audit event gets one before
// the handler returns (refusals and upstream errors are small unflushed
// answers, so the event is durable before the client sees them end).
func (p *Proxy) begin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{
			id: newRequestID(), clientID: clientRequestID(r), start: time.Now(), method: r.Method, path: r.URL.Path,
			remote: r.RemoteAddr, userAgent: r.UserAgent(), Inspection: p.inspect.Load(),
			unreadBody: r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0,
		}
		w.Header().Set("X-Request-Id", c.id)
		w.Header().Set("Pamctl-Audit-Id", c.id)
		if p.obs != nil {
			c.octx = p.obs.CallBegin(r.Context(), r.Header)
		}
		defer func() {
			p.releaseReservation(c)
			switch {
			case c.audited:
			case c.isRefusedUnauthenticated():
				c.audited = true // counted; written once per source and window
				p.refused.note(c)
			default:
				p.audit(r.Context(), c)
			}
			p.observeEnd(c)
			p.logCall(c)
		}()
		next.ServeHTTP(w, r.WithContext(withCall(r.Context(), c)))
	})
}

// releaseReservation returns the call's share of the in-flight body budget:
// when the upstream has answered (the body is no longer held) or when the
// call ends, whichever comes first.
func (p *Proxy) releaseReservation(c *call) {
	if c.reserved > 0 {
		p.inflight.release(c.claims.Req, c.reserved)
		c.reserved = 0
	}
}

// fail answers the call with e and remembers it for the audit event. A
// call refused before its body was read closes the connection, so the
// server does not read (up to 256 KiB of) the body it refused.
func (p *Proxy) fail(w http.ResponseWriter, c *call, e *apiError) {
	if c.unreadBody {
		w.Header().Set("Connection", "close")
	}
	c.err = e
	c.status = e.Status
	if e.Status < 500 {
		c.decision = "deny"
	}
	e.write(w)
}

func (p *Proxy) logCall(c *call) {
	// A call that succeeded is in the audit trail already: its line is
	// debug (one JSON line per call was ~5% of the proxy's CPU). Refusals
	// stay visible at info, failures at warn.
	level := slog.LevelInfo
	if c.status < 400 || c.isRefusedUnauthenticated() {
		level = slog.LevelDebug // a flood must not flood the log either; proxy.refused sums them up
	}
	if c.status >= 500 || c.auditFailed {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("request_id", c.id), slog.String("method", c.method), slog.String("path", clip(c.path, capShort)),
		slog.Int("status", c.status), slog.Int64("latency_ms", time.Since(c.start).Milliseconds()))
	if c.claims != nil {
		attrs = append(attrs, slog.String("grant", c.claims.Req), slog.String("sub", c.claims.Subject))
	}
	if c.model != "" {
		attrs = append(attrs, slog.String("model", c.model))
	}
	if c.hasUsage {
		attrs = append(attrs, slog.Int64("tokens", c.usage.Total))
	}
	if c.err != nil {
		attrs = append(attrs, slog.String("code", c.err.Code))
		if c.err.cause != nil {
			attrs = append(attrs, slog.String("err", c.maskQuoted(c.err.cause.Error())))
		}
	}
	if c.errDetail != "" {
		attrs = append(attrs, slog.String("detail", c.maskQuoted(c.errDetail)))
	}
	p.log.LogAttrs(ctx, level, "proxy call", attrs...)
}

// maskQuoted masks, as the call's answers are, a text that may quote what
// the upstream sent (Go's transport quotes a malformed answer in its
// errors; a refusal quotes the object an answer claims to be) before the
// log or the trail keeps it. Keys are scrubbed from the log as a whole.
// The masker reads the text with its \u escapes spelled out; when it
// masks nothing there (nor in the text as it is) the text stays as it
// was: six characters \u202e an upstream wrote are not turned into a
// U+202E.
func (c *call) maskQuoted(text string) string {
	if !c.ResponseMask.Enabled() {
		return text
	}
	read := payload.ValidText(unescapeQuoted(text), c.ResponseMask)
	out, _ := c.ResponseMask.Mask(read)
	if out == read {
		if same, _ := c.ResponseMask.Mask(text); same == text {
			return text
		}
	}
	return out
}

// unescapeQuoted spells out the \uXXXX escapes of a quoted upstream text
// (behind any number of backslashes: %q doubles the one JSON wrote), so
// that masking reads what a JSON decoder would: an upstream's
// "bob\u0040example.org" is an address there too.
func unescapeQuoted(s string) string {
	if !strings.Contains(s, `\u`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '\\' {
			j++
		}
		if j+5 <= len(s) && s[j] == 'u' {
			if r, err := strconv.ParseUint(s[j+1:j+5], 16, 32); err == nil {
				b.WriteRune(rune(r)) // a lone surrogate is written U+FFFD
				i = j + 5
				continue
			}
		}
		b.WriteString(s[i:j])
		i = j
	}
	return b.String()
}

// upstream is a configured provider with its reverse proxy.
type upstream struct {
	name    string
	base    *url.URL
	keyName string
	org     string
	project string
	fwd     *forwardSet // the client headers it gets
	// keyHeader is where the key goes ("": Authorization: Bearer);
	// extraHeader and extraKeyName the second vaulted key's ("": none).
	keyHeader    string
	extraHeader  string
	extraKeyName string
	client       *http.Client // for the model list
	rp           http.Handler
}

func (p *Proxy) newUpstream(u Upstream) (*upstream, error) {
	if u.Name == "" {
		return nil, errors.New("a name is required")
	}
	if strings.ContainsAny(u.Name, "/ ") {
		return nil, fmt.Errorf("name %q may not contain '/' or spaces", u.Name)
	}
	base, err := url.Parse(u.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("url %q must be an absolute http(s) URL such as https://api.openai.com/v1", u.URL)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath, base.RawQuery, base.Fragment = "", "", ""
	up := &upstream{name: u.Name, base: base, keyName: u.KeyName, org: u.Organization, project: u.Project}
	if err := u.CheckHeaders(); err != nil {
		return nil, err
	}
	up.keyHeader, up.extraHeader, up.extraKeyName = keyHeaders(u)
	up.fwd, _ = newForwardSet(u.ForwardHeaders, "Authorization", up.keyHeader, up.extraHeader)
	if up.keyName == "" {
		up.keyName = u.Name
	}
	rt := u.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = u.Timeout
		if t.ResponseHeaderTimeout <= 0 {
			t.ResponseHeaderTimeout = DefaultUpstreamTimeout
		}
		t.MaxIdleConnsPerHost = 64
		rt = t
	}
	up.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	up.rp = p.reverseProxy(up, rt)
	return up, nil
}

// target is the upstream URL for an upstream-relative path such as
// /chat/completions.
func (u *upstream) target(rel string, query string) *url.URL {
	t := *u.base
	t.Path = u.base.Path + rel
	t.RawQuery = query
	return &t
}
