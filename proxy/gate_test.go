package proxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

// TestRefusals checks every way the gate refuses a call: the right status
// and code in OpenAI's shape, a message that says what to do, nothing sent
// upstream, and a deny event in the trail: one per call once the caller is
// authenticated, one proxy.refused per source and window before.
func TestRefusals(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBody = 1 << 10 })
	good := h.mint(grant{scope: "model:gpt-4o", req: "req_good"})

	base := token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: "mallory", Audience: jwt.ClaimStrings{token.AudienceProxy}, ID: "jti1",
			ExpiresAt: jwt.NewNumericDate(h.clock.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(h.clock.Now()),
		},
		Use: token.UseAccess, Scope: "model:gpt-4o", Req: "req_x",
	}
	sign := func(m jwt.SigningMethod, kid string, key any, c token.Claims) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := h.keyring.PublicKey(h.keyring.ActiveKID())

	session := base
	session.Audience = jwt.ClaimStrings{token.AudienceBroker}
	session.Use = token.UseSession
	sessionTok, err := h.minter.Mint(session)
	if err != nil {
		t.Fatal(err)
	}
	expired := h.mint(grant{scope: "model:gpt-4o", ttl: time.Minute})
	h.clock.Advance(2 * time.Minute) // past exp and the verifier's 30 s leeway

	tooBig := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<10) + `"}]}`

	cases := []struct {
		name, method, path, tok, body string
		status                        int
		code, hint                    string
		hdr                           []string
	}{
		{"no token", "POST", "/v1/chat/completions", "", chatBody, 401, CodeInvalidAPIKey, "pamctl exec", nil},
		{"garbage", "POST", "/v1/chat/completions", "not-a-token", chatBody, 401, CodeInvalidAPIKey, "malformed", nil},
		{"garbage in api-key", "POST", "/v1/chat/completions", "", chatBody, 401, CodeInvalidAPIKey, "pamctl token", []string{"Api-Key", "sk-abc"}},
		{"basic auth", "POST", "/v1/chat/completions", "", chatBody, 401, CodeInvalidAPIKey, "pamctl exec", []string{"Authorization", "Basic YTpi"}},
		{"expired", "POST", "/v1/chat/completions", expired, chatBody, 401, CodeInvalidAPIKey, "expired", nil},
		{"broker session token", "POST", "/v1/chat/completions", sessionTok, chatBody, 401, CodeInvalidAPIKey, "wrong audience", nil},
		{"unknown signing key", "POST", "/v1/chat/completions", sign(jwt.SigningMethodEdDSA, "other-kid", otherPriv, base), chatBody, 401, CodeInvalidAPIKey, "unverifiable", nil},
		{"forged with known kid", "POST", "/v1/chat/completions", sign(jwt.SigningMethodEdDSA, h.keyring.ActiveKID(), otherPriv, base), chatBody, 401, CodeInvalidAPIKey, "signature", nil},
		{"alg HS256 keyed with the public key", "POST", "/v1/chat/completions", sign(jwt.SigningMethodHS256, h.keyring.ActiveKID(), []byte(pub), base), chatBody, 401, CodeInvalidAPIKey, "pamctl token", nil},
		{"alg none", "POST", "/v1/chat/completions", sign(jwt.SigningMethodNone, h.keyring.ActiveKID(), jwt.UnsafeAllowNoneSignatureType, base), chatBody, 401, CodeInvalidAPIKey, "pamctl token", nil},
		{"model outside scope", "POST", "/v1/chat/completions", good, `{"model":"gpt-4-turbo","messages":[]}`, 403, CodeModelNotInScope, "pamctl request --scope model:gpt-4-turbo", nil},
		{"model through another upstream", "POST", "/v1/chat/completions", good, `{"model":"nosuch/gpt-4o","messages":[]}`, 403, CodeModelNotInScope, "model:nosuch/gpt-4o", nil},
		{"endpoint not allowed", "POST", "/v1/audio/speech", good, `{"model":"tts-1","input":"x"}`, 403, CodeEndpointNotAllowed, "pamctl request --scope endpoint:/v1/audio/speech", nil},
		{"other method on a default path", "GET", "/v1/chat/completions", good, "", 403, CodeEndpointNotAllowed, "endpoint:/v1/chat/completions", nil},
		{"path outside /v1", "GET", "/admin", good, "", 404, "unknown_url", "/v1", nil},
		{"unclean path", "POST", "/v1/chat/../audio/speech", good, chatBody, 404, "unknown_url", "/v1", nil},
		{"body over the limit", "POST", "/v1/chat/completions", good, tooBig, 413, CodeRequestTooLarge, "smaller", nil},
		{"malformed JSON", "POST", "/v1/chat/completions", good, `{"model":"gpt-4o",`, 400, CodeInvalidJSON, "not a valid JSON object", nil},
		{"not an object", "POST", "/v1/chat/completions", good, `["gpt-4o"]`, 400, CodeInvalidJSON, "not a valid JSON object", nil},
		{"missing model", "POST", "/v1/chat/completions", good, `{"messages":[]}`, 400, CodeMissingModel, `"model"`, nil},
		// A model's name travels into the trail, holds, metrics and spans:
		// one a client makes megabytes long is refused, in a body or a path.
		{"model name over the bound", "POST", "/v1/chat/completions", good, `{"model":"gpt-4o` + strings.Repeat("x", maxModelName) + `","messages":[]}`, 400, CodeInvalidModel, "at most 256", nil},
		{"model name at the bound", "POST", "/v1/chat/completions", good, `{"model":"gpt-4o` + strings.Repeat("x", maxModelName-6) + `","messages":[]}`, 403, CodeModelNotInScope, "pamctl request", nil},
		{"model path over the bound", "GET", "/v1/models/gpt-4o" + strings.Repeat("x", maxModelName), good, "", 400, CodeInvalidModel, "at most 256", nil},
		{"path over the bound", "GET", "/v1/responses/resp_" + strings.Repeat("x", maxPath), good, "", 414, CodeURITooLong, "at most 2048", nil},
		{"path at the bound", "GET", "/v1/responses/" + strings.Repeat("x", maxPath-len("/v1/responses/")), good, "", 403, CodeEndpointNotAllowed, "endpoint:", nil},
		{"empty body", "POST", "/v1/embeddings", good, " ", 400, CodeInvalidJSON, "empty", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, events := h.up.count(), len(h.sink.all())
			res, b := h.do(tc.method, tc.path, tc.tok, tc.body, tc.hdr...)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, b)
			}
			e := apiErr(t, b)
			if e.Code != tc.code || !strings.Contains(e.Message, tc.hint) {
				t.Fatalf("error %+v, want code %s and a message with %q", e, tc.code, tc.hint)
			}
			if h.up.count() != before {
				t.Fatal("a refused call reached the upstream")
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id on a refusal")
			}
			all := h.sink.all()
			if tc.status == 401 {
				if len(all) != events {
					t.Fatalf("%d audit events for one unauthenticated refusal; want them counted", len(all)-events)
				}
				return
			}
			if len(all) != events+1 {
				t.Fatalf("%d audit events for one refusal", len(all)-events)
			}
			ev := all[len(all)-1]
			if ev.Status != tc.status || ev.Decision != "deny" || !strings.Contains(ev.Error, tc.code) {
				t.Fatalf("audit event %+v", ev)
			}
			if tc.tok != "" && strings.Contains(ev.Error, tc.tok) {
				t.Fatal("the token reached the audit trail")
			}
		})
	}

	// The ten unauthenticated refusals are one event, written when the
	// window ends.
	h.proxy.refused.flush()
	refused := h.sink.ofType(audit.TypeProxyRefused)
	if len(refused) != 1 {
		t.Fatalf("%d proxy.refused events, want 1", len(refused))
	}
	if ev := refused[0]; ev.Client == nil || ev.Client.RemoteAddr != "127.0.0.0/24" || ev.Details["last_address"] != "127.0.0.1" || ev.Details["count"] != "10" ||
		ev.Details["codes"] != CodeInvalidAPIKey+"=10" || ev.Decision != "deny" || ev.Actor != nil {
		t.Fatalf("proxy.refused event %+v", ev)
	}
	for _, tc := range cases {
		if j, _ := json.Marshal(refused[0]); tc.tok != "" && strings.Contains(string(j), tc.tok) {
			t.Fatal("a token reached the audit trail")
		}
	}

	// The good token still works: refusals left the proxy healthy.
	if res, b := h.do("POST", "/v1/chat/completions", good, chatBody); res.StatusCode != 200 {
		t.Fatalf("good call after refusals: %d %s", res.StatusCode, b)
	}
}

// TestRevocationBitesOnNextCall: a token that just worked, and sits in the
// verification cache, is refused on the very next call once its grant is
// revoked.
func TestRevocationBitesOnNextCall(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", req: "req_rev"})
	if res, b := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatalf("first call: %d %s", res.StatusCode, b)
	}
	if h.proxy.tokens.len() != 1 {
		t.Fatal("the verified token was not cached")
	}
	h.revoked.Revoke("req_rev")
	before := h.up.count()
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 401 {
		t.Fatalf("revoked: %d %s", res.StatusCode, b)
	}
	if e := apiErr(t, b); e.Code != CodeInvalidAPIKey || !strings.Contains(e.Message, "req_rev has ended early (revoked, or no longer allowed") ||
		!strings.Contains(e.Message, "pamctl request --scope model:gpt-4o") {
		t.Fatalf("error %+v", e)
	}
	if h.up.count() != before {
		t.Fatal("a revoked call reached the upstream")
	}
	h.proxy.refused.flush()
	if ev := h.sink.all(); ev[len(ev)-1].Type != audit.TypeProxyRefused || ev[len(ev)-1].Details["grants"] != "req_rev" ||
		ev[len(ev)-1].Details["count"] != "1" || ev[len(ev)-1].Decision != "deny" {
		t.Fatalf("audit event %+v", ev[len(ev)-1])
	}
}

// TestCachedTokenExpires: the cache never extends a token's life; the
// injected clock decides on every call.
func TestCachedTokenExpires(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o", ttl: 5 * time.Minute})
	if res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody); res.StatusCode != 200 {
		t.Fatalf("fresh token refused: %d", res.StatusCode)
	}
	h.clock.Advance(5*time.Minute + 31*time.Second) // past exp and leeway
	res, b := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if res.StatusCode != 401 || !strings.Contains(apiErr(t, b).Message, "expired") {
		t.Fatalf("expired cached token: %d %s", res.StatusCode, b)
	}
	if h.proxy.tokens.len() != 0 {
		t.Fatal("an expired token stayed in the cache")
	}
}

// countingVerifier counts signature checks.
type countingVerifier struct {
	v TokenVerifier
	n int
}

func (c *countingVerifier) Verify(raw string) (*token.Claims, error) {
	c.n++
	return c.v.Verify(raw)
}

func TestVerifyCacheSkipsSignatureChecksAndStaysBounded(t *testing.T) {
	h := newHarness(t)
	cv := &countingVerifier{v: &token.Verifier{Keys: h.keyring, Audience: token.AudienceProxy, Use: token.UseAccess, Now: h.clock.Now}}
	cache := newVerifyCache(cv, h.clock.Now, 8)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	for i := 0; i < 5; i++ {
		if _, _, err := cache.verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if cv.n != 1 {
		t.Fatalf("%d signature checks for 5 uses of one token", cv.n)
	}
	for i := 0; i < 50; i++ {
		if _, _, err := cache.verify(h.mint(grant{scope: "model:gpt-4o"})); err != nil {
			t.Fatal(err)
		}
		if cache.len() > 8 {
			t.Fatalf("cache grew to %d entries, bound 8", cache.len())
		}
	}
	if _, _, err := cache.verify("garbage"); err == nil {
		t.Fatal("garbage verified")
	}
}

// TestRequestIDs: pamctl mints every call's id (the answer's X-Request-Id
// and Pamctl-Audit-Id, the upstream's X-Request-Id, the trail's
// request_id), whatever the client sent: an agent that chose it could
// give two calls one id and muddle joins in the trail. The client's own
// X-Request-Id is kept apart, as client_request_id.
func TestRequestIDs(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	var ids []string
	for range 2 {
		res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody, "X-Request-Id", "agent-run-42")
		id := res.Header.Get("X-Request-Id")
		if !strings.HasPrefix(id, "req_") || len(id) != 28 || res.Header.Get("Pamctl-Audit-Id") != id ||
			len(res.Header.Values("X-Request-Id")) != 1 || len(res.Header.Values("Pamctl-Audit-Id")) != 1 {
			t.Fatalf("answer's ids: %v", res.Header)
		}
		reqs := h.up.requests()
		if got := reqs[len(reqs)-1].Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
			t.Fatalf("upstream got request id %q, want %q", got, id)
		}
		ev := h.sink.last(t)
		if ev.Details["request_id"] != id || ev.Details["client_request_id"] != "agent-run-42" || ev.Details["upstream_request_id"] != "upstream-openai" {
			t.Fatalf("audit details %v", ev.Details)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Fatalf("two calls with one client id share the trail's request_id %s", ids[0])
	}
	res, _ := h.do("POST", "/v1/chat/completions", tok, chatBody)
	if id := res.Header.Get("X-Request-Id"); !strings.HasPrefix(id, "req_") || len(id) != 28 {
		t.Fatalf("generated request id %q", id)
	}
	if ev := h.sink.last(t); ev.Details["client_request_id"] != "" {
		t.Fatalf("no client id sent, trail has %q", ev.Details["client_request_id"])
	}
}

// TestClientRequestIDIsBoundedAndEscaped: the client's X-Request-Id is
// attacker input on its way into the trail (and every terminal, SIEM and
// web page that shows it): control characters, non-ASCII bytes, spaces
// and '%' are percent-encoded, several lines are joined, and a long one is
// cut at 128 bytes with its length said.
func TestClientRequestIDIsBoundedAndEscaped(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o"})
	// Raw bytes, as a hostile client writes them (Go's client refuses
	// control characters in a header value).
	send := func(lines ...string) (int, string) {
		body := chatBody
		var hdr string
		for _, l := range lines {
			hdr += "X-Request-Id: " + l + "\r\n"
		}
		return rawCall(t, h, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n"+hdr+"Connection: close\r\n\r\n"+body)
	}
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{[]string{"run 42\t%done"}, "run%2042%09%25done"},
		{[]string{"a\x1b[31mred\x7f"}, "a%1B[31mred%7F"},
		{[]string{"caf\xc3\xa9"}, "caf%C3%A9"},
		{[]string{"first", "second"}, "first,second"},
		// A comma in a value is escaped: the commas left count the
		// lines (black-box red team: "a,b" read as two).
		{[]string{"a,b"}, "a%2Cb"},
		{[]string{"a,b", "c"}, "a%2Cb,c"},
		{[]string{"a", "", "b,"}, "a,,b%2C"},
		{[]string{"\u202egnp.exe"}, "%E2%80%AEgnp.exe"},
	} {
		code, b := send(tc.lines...)
		if code == http.StatusBadRequest && !strings.Contains(b, "error") {
			continue // Go's server refused the header before the proxy saw it
		}
		if code != http.StatusOK {
			t.Fatalf("%q: %d %s", tc.lines, code, b)
		}
		ev := h.sink.last(t)
		if ev.Details["client_request_id"] != tc.want || !strings.HasPrefix(ev.Details["request_id"], "req_") {
			t.Errorf("%q: trail has client_request_id %q, want %q (request_id %q)", tc.lines, ev.Details["client_request_id"], tc.want, ev.Details["request_id"])
		}
	}
	long := strings.Repeat("x", 1000)
	if code, b := send(long); code != http.StatusOK {
		t.Fatalf("long id: %d %s", code, b)
	}
	if got := h.sink.last(t).Details["client_request_id"]; got != strings.Repeat("x", 128)+"... (1000 bytes)" {
		t.Errorf("long id kept as %q", got)
	}
	// A cut never splits an escape.
	if code, b := send(strings.Repeat("x", 127) + " tail"); code != http.StatusOK {
		t.Fatalf("cut escape: %d %s", code, b)
	}
	if got := h.sink.last(t).Details["client_request_id"]; got != strings.Repeat("x", 127)+"... (132 bytes)" {
		t.Errorf("cut inside an escape: %q", got)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := New(Options{Upstreams: []Upstream{{Name: "a/b", URL: "ftp://x"}, {URL: "http://x"}}})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"verifier", "key source", "audit sink", "may not contain '/'", "a name is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	p, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ups) != 1 || p.ups[0].name != "openai" || p.ups[0].base.String() != "https://api.openai.com/v1" || p.ups[0].keyName != "openai" {
		t.Fatalf("default upstream %+v", p.ups[0])
	}
}

// TestChunkedBodyOverLimit: a body without Content-Length is cut at the
// limit, not read whole.
func TestChunkedBodyOverLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBody = 1 << 10 })
	tok := h.mint(grant{scope: "model:gpt-4o"})
	body := io.MultiReader(strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"`),
		strings.NewReader(strings.Repeat("x", 4<<10)), strings.NewReader(`"}]}`))
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/chat/completions", body)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if req.ContentLength != 0 || res.StatusCode != 413 || apiErr(t, b).Code != CodeRequestTooLarge {
		t.Fatalf("content length %d: got %d %s", req.ContentLength, res.StatusCode, b)
	}
	if h.up.count() != 0 {
		t.Fatal("an oversized body reached the upstream")
	}
}
