package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/token"
)

// The vaulted provider key of the tests. It must never reach a client, a
// log line or an audit event.
const vaultedKey = "sk-test-VAULTED-8c1f0e6b2d4a4f7e9a3b5c7d9e1f3a5b"

type memKeys struct {
	mu sync.Mutex
	m  map[string]token.SealedKey
}

func (s *memKeys) SaveKey(_ context.Context, k token.SealedKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k.KID] = k
	return nil
}

func (s *memKeys) Keys(context.Context) ([]token.SealedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []token.SealedKey
	for _, k := range s.m {
		out = append(out, k)
	}
	return out, nil
}

// clock is the injected time, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// revocations is the broker's in-process revocation set.
type revocations struct{ m sync.Map }

func (r *revocations) IsRevoked(grant string) bool { _, ok := r.m.Load(grant); return ok }
func (r *revocations) Revoke(grant string)         { r.m.Store(grant, true) }

// keySource is the vault.
type keySource map[string]string

func (k keySource) ProviderKey(_ context.Context, name string) (string, error) {
	v, ok := k[name]
	if !ok {
		return "", errors.New("vault: no such entry")
	}
	return v, nil
}

// memSink is an in-memory audit log.
type memSink struct {
	mu       sync.Mutex
	events   []audit.Event
	fail     atomic.Bool
	onAppend atomic.Pointer[func(*audit.Event)]
}

func (s *memSink) Append(_ context.Context, e *audit.Event) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	if f := s.onAppend.Load(); f != nil {
		(*f)(e)
	}
	if err := e.Normalize(time.Now()); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Seq = uint64(len(s.events) + 1)
	s.events = append(s.events, e.Clone())
	return nil
}

func (s *memSink) all() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.events...)
}

func (s *memSink) ofType(t audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range s.all() {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// last returns the last proxy.call event.
func (s *memSink) last(t *testing.T) audit.Event {
	t.Helper()
	calls := s.ofType(audit.TypeProxyCall)
	if len(calls) == 0 {
		t.Fatal("no proxy.call event was written")
	}
	return calls[len(calls)-1]
}

// seenRequest is what the fake upstream received.
type seenRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// fakeUpstream is an OpenAI-compatible upstream that refuses any key but
// the vaulted one and remembers every request.
type fakeUpstream struct {
	t    *testing.T
	srv  *httptest.Server
	name string

	mu   sync.Mutex
	seen []seenRequest

	// handler, when set, answers instead of the default OpenAI behaviour.
	handler atomic.Pointer[http.HandlerFunc]
}

func newFakeUpstream(t *testing.T, name string) *fakeUpstream {
	u := &fakeUpstream{t: t, name: name}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func (u *fakeUpstream) count() int { return len(u.requests()) }

// set makes h answer the next requests; nil restores the default.
func (u *fakeUpstream) set(h http.HandlerFunc) {
	if h == nil {
		u.handler.Store(nil)
		return
	}
	u.handler.Store(&h)
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	u.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+vaultedKey {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		// Like OpenAI, quote part of the key we got.
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s","type":"invalid_request_error","code":"invalid_api_key","param":null}}`, r.Header.Get("Authorization"))
		return
	}
	if h := u.handler.Load(); h != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		(*h)(w, r)
		return
	}
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	_ = json.Unmarshal(body, &req)
	w.Header().Set("X-Request-Id", "upstream-"+u.name)
	w.Header().Set("Set-Cookie", "__cf_bm=tracking")
	w.Header().Set("OpenAI-Organization", "org-secret-name")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSON(w, `{"object":"list","data":[`+
			`{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"},`+
			`{"id":"gpt-4o-mini","object":"model","created":1,"owned_by":"openai"},`+
			`{"id":"o3","object":"model","created":1,"owned_by":"openai"},`+
			`{"id":"text-embedding-3-small","object":"model","created":1,"owned_by":"openai"}]}`)
	case r.URL.Path == "/v1/chat/completions" && req.Stream:
		writeChatStream(w, req.Model, req.StreamOptions.IncludeUsage, nil)
	case r.URL.Path == "/v1/chat/completions":
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"`+req.Model+`",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from `+u.name+`"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
	case r.URL.Path == "/v1/responses" && req.Stream:
		writeResponsesStream(w, req.Model)
	case r.URL.Path == "/v1/responses":
		writeJSON(w, responseJSON(req.Model, "completed"))
	case r.URL.Path == "/v1/embeddings":
		writeJSON(w, `{"object":"list","model":"`+req.Model+`","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],`+
			`"usage":{"prompt_tokens":3,"total_tokens":3}}`)
	case r.URL.Path == "/v1/audio/transcriptions":
		writeJSON(w, `{"text":"hello","usage":{"type":"tokens","input_tokens":9,"output_tokens":2,"total_tokens":11}}`)
	case strings.HasPrefix(r.URL.Path, "/v1/audio/"):
		w.Header().Set("Content-Type", "audio/mpeg")
		_, _ = w.Write(bytes.Repeat([]byte{0xff, 0xf3}, 50000))
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"message":"unknown path","type":"invalid_request_error","code":null,"param":null}}`)
	}
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

func responseJSON(model, status string) string {
	return `{"id":"resp_1","object":"response","created_at":1,"status":"` + status + `","model":"` + model + `",` +
		`"output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello there","annotations":[]}]}],` +
		`"usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0}}}`
}

// sseWrite writes one event and flushes it.
func sseWrite(w http.ResponseWriter, event, data string) {
	if event != "" {
		fmt.Fprintf(w, "event: %s\n", event)
	}
	fmt.Fprintf(w, "data: %s\n\n", data)
	w.(http.Flusher).Flush()
}

// writeChatStream streams a chat completion; between, when set, runs after
// the first content chunk (tests use it to cut or stall the stream).
func writeChatStream(w http.ResponseWriter, model string, usage bool, between func() bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	u := ""
	if usage {
		u = `,"usage":null`
	}
	chunk := func(delta, finish string) string {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"` + model + `","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + f + `}]` + u + `}`
	}
	sseWrite(w, "", chunk(`{"role":"assistant","content":""}`, ""))
	sseWrite(w, "", chunk(`{"content":"Hello"}`, ""))
	if between != nil && !between() {
		return
	}
	sseWrite(w, "", chunk(`{"content":" world"}`, ""))
	sseWrite(w, "", chunk(`{}`, "stop"))
	if usage {
		sseWrite(w, "", `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"`+model+`","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`)
	}
	sseWrite(w, "", "[DONE]")
}

func writeResponsesStream(w http.ResponseWriter, model string) {
	w.Header().Set("Content-Type", "text/event-stream")
	sseWrite(w, "response.created", `{"type":"response.created","sequence_number":0,"response":`+responseJSON(model, "in_progress")+`}`)
	sseWrite(w, "response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello","logprobs":[]}`)
	sseWrite(w, "response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there","logprobs":[]}`)
	sseWrite(w, "response.completed", `{"type":"response.completed","sequence_number":3,"response":`+responseJSON(model, "completed")+`}`)
}

// harness is a proxy in front of fake upstreams, with a keyring to mint
// tokens, an injected clock, a revocation set and an in-memory trail.
type harness struct {
	t        *testing.T
	clock    *clock
	keyring  *token.Keyring
	minter   *token.Minter
	revoked  *revocations
	sink     *memSink
	logs     *logtest.Buffer
	up       *fakeUpstream
	proxy    *Proxy
	srv      *httptest.Server
	bodySeen []string // every body a client received, for leak checks
	mu       sync.Mutex
}

type harnessOption func(*Options)

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, clock: &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}, revoked: &revocations{}, sink: &memSink{}, logs: &logtest.Buffer{}}
	h.keyring, h.minter = newKeyring(t, h.clock)
	h.up = newFakeUpstream(t, "openai")
	// The upstream's header timeout is far above what any test's fake
	// upstream takes, even one that builds a 16 MiB answer under -race on
	// a loaded CI box (5 s was once exceeded there: a 504 where the test
	// wanted the answer's own refusal); TestUpstreamTimeout sets its own.
	o := Options{
		Verifier:  &token.Verifier{Keys: h.keyring, Issuer: "http://broker", Audience: token.AudienceProxy, Use: token.UseAccess, Now: h.clock.Now},
		Revoked:   h.revoked,
		Keys:      keySource{"openai": vaultedKey, "azure": vaultedKey},
		Upstreams: []Upstream{{Name: "openai", URL: h.up.srv.URL + "/v1", KeyName: "openai", Timeout: time.Minute}},
		Audit:     h.sink,
		Logger:    slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:       h.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = p
	h.srv = httptest.NewServer(p)
	t.Cleanup(h.srv.Close)
	t.Cleanup(h.assertNoLeak)
	return h
}

// plainSealer stands in for broker/vault's sealer (the proxy may not
// import it): it only binds the sealed bytes to their aad.
type plainSealer struct{}

func (plainSealer) Seal(p []byte, aad string) ([]byte, error) {
	return append([]byte(aad+"|"), p...), nil
}

func (plainSealer) Open(b []byte, aad string) ([]byte, error) {
	rest, ok := bytes.CutPrefix(b, []byte(aad+"|"))
	if !ok {
		return nil, errors.New("sealed for another aad")
	}
	return rest, nil
}

func newKeyring(t testing.TB, c *clock) (*token.Keyring, *token.Minter) {
	t.Helper()
	kr, err := token.LoadKeyring(context.Background(), &memKeys{m: map[string]token.SealedKey{}}, plainSealer{}, 8*time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return kr, &token.Minter{Keys: kr, Issuer: "http://broker", Now: c.Now}
}

// grant describes a token to mint.
type grant struct {
	scope  string
	req    string
	ttl    time.Duration
	limits *token.Limits
}

func (h *harness) mint(g grant) string {
	h.t.Helper()
	if g.req == "" {
		g.req = "req_" + token.NewID()[:12]
	}
	if g.ttl == 0 {
		g.ttl = 15 * time.Minute
	}
	raw, err := h.minter.Mint(token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice@example.com",
			Audience:  jwt.ClaimStrings{token.AudienceProxy},
			ExpiresAt: jwt.NewNumericDate(h.clock.Now().Add(g.ttl)),
		},
		Use: token.UseAccess, Scope: g.scope, Req: g.req, Email: "alice@example.com",
		Groups: []string{"ml"}, Kind: "user", IdP: "corp", Limits: g.limits,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return raw
}

// do sends a raw request to the proxy and returns status, headers and body.
func (h *harness) do(method, path, tok string, body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	return h.doWith(h.srv.Client(), method, path, tok, body, hdr...)
}

// doWith is do through cl.
func (h *harness) doWith(cl *http.Client, method, path, tok string, body string, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	res, b, err := h.doAt(cl, h.srv.URL, method, path, tok, body, hdr...)
	if err != nil {
		h.t.Fatal(err)
	}
	return res, b
}

// doAt is doWith to the proxy served at base (h.srv.URL, or another
// server of h.proxy), returning the error that ended reading the answer's
// body (a cut answer) with what was read before it.
func (h *harness) doAt(cl *http.Client, base, method, path, tok string, body string, hdr ...string) (*http.Response, []byte, error) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := cl.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	h.remember(b)
	return res, b, err
}

func (h *harness) remember(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bodySeen = append(h.bodySeen, string(b))
}

// assertNoLeak checks that the vaulted key is in no response body, log
// line or audit event, and that the upstream never saw a pamctl token.
func (h *harness) assertNoLeak() {
	t := h.t
	h.mu.Lock()
	bodies := strings.Join(h.bodySeen, "\n")
	h.mu.Unlock()
	if strings.Contains(bodies, vaultedKey) || strings.Contains(bodies, vaultedKey[8:30]) {
		t.Error("the vaulted key reached a client")
	}
	if logs := h.logs.String(); strings.Contains(logs, vaultedKey) || strings.Contains(logs, vaultedKey[8:30]) {
		t.Error("the vaulted key reached the log")
	}
	ev, _ := json.Marshal(h.sink.all())
	if strings.Contains(string(ev), vaultedKey) || strings.Contains(string(ev), vaultedKey[8:30]) {
		t.Error("the vaulted key reached the audit trail")
	}
	for _, r := range h.up.requests() {
		dump := fmt.Sprint(r.Header) + string(r.Body)
		if strings.Contains(dump, "eyJ") { // every JWT starts so
			t.Errorf("upstream saw a pamctl token in %s %s", r.Method, r.Path)
		}
	}
}

// apiErr decodes an OpenAI error body.
func apiErr(t *testing.T, b []byte) errorObject {
	t.Helper()
	var e struct {
		Error *errorObject `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error body: %s", b)
	}
	if e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("error body lacks message or type: %s", b)
	}
	return *e.Error
}

// waitFor polls cond for up to 5 s (only for effects of other goroutines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
