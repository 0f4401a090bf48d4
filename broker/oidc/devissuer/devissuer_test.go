package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testKey is shared so the tests do not each generate an RSA key.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start serves a new issuer at http://127.0.0.1:PORT+path.
func start(t *testing.T, path string, opts ...Option) (*Issuer, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	opts = append([]Option{WithSigningKey(testKey())}, opts...)
	iss, err := New("http://"+srv.Listener.Addr().String()+path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss
	srv.Start()
	t.Cleanup(srv.Close)
	return iss, srv
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := noRedirect.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("POST %s: decode: %v", u, err)
	}
	return resp.StatusCode, body
}

// verifiedClaims checks raw against the issuer's published JWKS and returns
// its claims.
func verifiedClaims(t *testing.T, iss *Issuer, raw string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, iss.URL()+PathKeys, &set)
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", jws.Signatures[0].Header.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiscoveryUnderBasePath(t *testing.T) {
	for _, strip := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(nil)
		base := "http://" + srv.Listener.Addr().String() + "/dev/oidc"
		iss, err := New(base, WithSigningKey(testKey()))
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		if strip {
			mux.Handle("/dev/oidc/", http.StripPrefix("/dev/oidc", iss))
		} else {
			mux.Handle("/dev/oidc/", iss)
		}
		srv.Config.Handler = mux
		srv.Start()

		var doc map[string]any
		getJSON(t, base+PathDiscovery, &doc)
		want := map[string]string{
			"issuer":                        base,
			"authorization_endpoint":        base + "/authorize",
			"token_endpoint":                base + "/token",
			"jwks_uri":                      base + "/keys",
			"device_authorization_endpoint": base + "/device/code",
		}
		for k, v := range want {
			if doc[k] != v {
				t.Errorf("strip=%v: %s = %v, want %s", strip, k, doc[k], v)
			}
		}
		if algs := doc["id_token_signing_alg_values_supported"]; !slices.Equal(toStrings(algs), []string{"RS256"}) {
			t.Errorf("algs = %v", algs)
		}
		if m := doc["code_challenge_methods_supported"]; !slices.Equal(toStrings(m), []string{"S256"}) {
			t.Errorf("code_challenge_methods_supported = %v", m)
		}
		var set jose.JSONWebKeySet
		getJSON(t, base+PathKeys, &set)
		if len(set.Keys) != 1 || set.Keys[0].KeyID != iss.KeyID() || set.Keys[0].Algorithm != "RS256" || !set.Keys[0].IsPublic() {
			t.Errorf("strip=%v: JWKS = %+v", strip, set.Keys)
		}
		resp, err := noRedirect.Get(base + "/nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown path: %s", resp.Status)
		}
		srv.Close()
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func TestMint(t *testing.T) {
	clock := newClock()
	iss, _ := start(t, "", WithClock(clock.Now), WithTokenTTL(30*time.Minute))
	raw, err := iss.Mint(Claims{
		Subject: "alice", Email: "alice@example.com", Groups: []string{"ml", "security"},
		Audience: "pamctl-test", Nonce: "n-1",
		Extra: map[string]any{"repository_owner": "acme"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := verifiedClaims(t, iss, raw)
	checks := map[string]any{
		"iss": iss.URL(), "sub": "alice", "aud": "pamctl-test", "nonce": "n-1",
		"email": "alice@example.com", "email_verified": true, "repository_owner": "acme",
		"iat": float64(clock.Now().Unix()), "exp": float64(clock.Now().Add(30 * time.Minute).Unix()),
	}
	for k, want := range checks {
		if c[k] != want {
			t.Errorf("%s = %v, want %v", k, c[k], want)
		}
	}
	if g := toStrings(c["groups"]); !slices.Equal(g, []string{"ml", "security"}) {
		t.Errorf("groups = %v", g)
	}

	if _, err := iss.Mint(Claims{}); err == nil {
		t.Error("Mint without subject succeeded")
	}
	if _, err := iss.Mint(Claims{Subject: "a", Extra: map[string]any{"iss": "https://evil"}}); err == nil {
		t.Error("Mint let Extra replace iss")
	}
	raw, err = iss.Mint(Claims{Subject: "a", Expiry: clock.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if c := verifiedClaims(t, iss, raw); c["exp"] != float64(clock.Now().Add(-time.Minute).Unix()) || c["aud"] != DefaultClientID {
		t.Errorf("expired token claims: exp=%v aud=%v", c["exp"], c["aud"])
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	cases := map[string]struct {
		url  string
		opts []Option
	}{
		"relative URL":    {url: "/dev/oidc"},
		"query":           {url: "http://127.0.0.1:1/x?a=b"},
		"ftp":             {url: "ftp://127.0.0.1/"},
		"nil clock":       {url: "http://127.0.0.1:1", opts: []Option{WithClock(nil)}},
		"zero TTL":        {url: "http://127.0.0.1:1", opts: []Option{WithTokenTTL(0)}},
		"empty client":    {url: "http://127.0.0.1:1", opts: []Option{WithClients("")}},
		"bad domain":      {url: "http://127.0.0.1:1", opts: []Option{WithEmailDomain("@x")}},
		"small key":       {url: "http://127.0.0.1:1", opts: []Option{WithSigningKey(smallKey(t))}},
		"negative poll":   {url: "http://127.0.0.1:1", opts: []Option{WithPollInterval(-time.Second)}},
		"zero code TTL":   {url: "http://127.0.0.1:1", opts: []Option{WithCodeTTL(0)}},
		"zero dev TTL":    {url: "http://127.0.0.1:1", opts: []Option{WithDeviceTTL(0)}},
		"nil signing key": {url: "http://127.0.0.1:1", opts: []Option{WithSigningKey(nil)}},
	}
	for name, tc := range cases {
		if _, err := New(tc.url, tc.opts...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func smallKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoopbackRedirects(t *testing.T) {
	good := []string{
		"http://127.0.0.1:49152/callback", "http://127.0.0.1/", "http://localhost:8080/cb",
		"http://[::1]:9000/callback", "http://127.0.0.1:1/callback?x=1",
	}
	bad := []string{
		"https://127.0.0.1:49152/callback", "http://evil.example/callback",
		"http://127.0.0.1.evil.example/", "http://127.0.0.1:80@evil.example/",
		"http://user@127.0.0.1:1/", "http://127.0.0.1:1/cb#frag", "myapp://callback",
		"//127.0.0.1:1/", "http://10.0.0.1:1/", "", "http://127.0.0.1:99999/",
	}
	for _, u := range good {
		if !isLoopbackRedirect(u) {
			t.Errorf("%q refused", u)
		}
	}
	for _, u := range bad {
		if isLoopbackRedirect(u) {
			t.Errorf("%q accepted", u)
		}
	}
}

// authorize performs /authorize with params and returns the redirect target.
func authorize(t *testing.T, iss *Issuer, params url.Values) (*http.Response, *url.URL) {
	t.Helper()
	resp, err := noRedirect.Get(iss.URL() + PathAuthorize + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return resp, loc
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B

func authParams(redirect string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {"pamctl"},
		"redirect_uri":          {redirect},
		"scope":                 {"openid email profile"},
		"state":                 {"st-1"},
		"nonce":                 {"no-1"},
		"code_challenge":        {s256(testVerifier)},
		"code_challenge_method": {"S256"},
		"login_hint":            {"alice"},
		"groups":                {"ml, security,ml"},
	}
}

func TestS256MatchesRFC7636(t *testing.T) {
	if got := s256(testVerifier); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("s256 = %s", got)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	iss, _ := start(t, "", WithClients("pamctl"))
	const cb = "http://127.0.0.1:5555/callback"

	// Errors before the redirect URI is trusted stay in the browser.
	for name, mutate := range map[string]func(url.Values){
		"non-loopback redirect": func(v url.Values) { v.Set("redirect_uri", "https://evil.example/cb") },
		"unknown client":        func(v url.Values) { v.Set("client_id", "other") },
	} {
		p := authParams(cb)
		mutate(p)
		resp, loc := authorize(t, iss, p)
		if resp.StatusCode != http.StatusBadRequest || loc != nil {
			t.Errorf("%s: %s, Location %v", name, resp.Status, loc)
		}
	}

	// Later errors go back to the client with the state.
	for name, tc := range map[string]struct {
		mutate func(url.Values)
		code   string
	}{
		"no PKCE":       {func(v url.Values) { v.Del("code_challenge") }, "invalid_request"},
		"plain PKCE":    {func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request"},
		"short PKCE":    {func(v url.Values) { v.Set("code_challenge", "abc") }, "invalid_request"},
		"no openid":     {func(v url.Values) { v.Set("scope", "email") }, "invalid_scope"},
		"implicit":      {func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		"no login_hint": {func(v url.Values) { v.Del("login_hint") }, "login_required"},
		"spaced hint":   {func(v url.Values) { v.Set("login_hint", "a b") }, "login_required"},
	} {
		p := authParams(cb)
		tc.mutate(p)
		_, loc := authorize(t, iss, p)
		if loc == nil {
			t.Errorf("%s: no redirect", name)
			continue
		}
		q := loc.Query()
		if q.Get("error") != tc.code || q.Get("state") != "st-1" || q.Get("code") != "" {
			t.Errorf("%s: redirected with %v", name, q)
		}
	}
}

func TestCodeGrant(t *testing.T) {
	clock := newClock()
	iss, _ := start(t, "/dev/oidc", WithClock(clock.Now), WithCodeTTL(time.Minute))
	const cb = "http://127.0.0.1:5555/callback"
	newCode := func() string {
		t.Helper()
		_, loc := authorize(t, iss, authParams(cb))
		if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "st-1" {
			t.Fatalf("authorize did not redirect with a code: %v", loc)
		}
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got != cb {
			t.Fatalf("redirected to %s", got)
		}
		return loc.Query().Get("code")
	}
	redeem := func(code, verifier, redirect string) (int, map[string]any) {
		t.Helper()
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
			"client_id": {"pamctl"},
		}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		return postForm(t, iss.URL()+PathToken, form)
	}
	wantErr := func(name string, status int, body map[string]any, code string) {
		t.Helper()
		if status != http.StatusBadRequest || body["error"] != code || body["id_token"] != nil {
			t.Errorf("%s: %d %v, want 400 %s", name, status, body, code)
		}
	}

	// A wrong verifier is refused, and spends the code.
	code := newCode()
	status, body := redeem(code, strings.Repeat("x", 43), cb)
	wantErr("wrong verifier", status, body, "invalid_grant")
	status, body = redeem(code, testVerifier, cb)
	wantErr("code after failed attempt", status, body, "invalid_grant")

	status, body = redeem(newCode(), "", cb)
	wantErr("missing verifier", status, body, "invalid_grant")

	status, body = redeem(newCode(), testVerifier, "http://127.0.0.1:6666/callback")
	wantErr("other redirect_uri", status, body, "invalid_grant")

	code = newCode()
	clock.Advance(time.Minute)
	status, body = redeem(code, testVerifier, cb)
	wantErr("expired code", status, body, "invalid_grant")

	code = newCode()
	authenticated := clock.Now()
	clock.Advance(20 * time.Second) // the client redeems a little later
	status, body = redeem(code, testVerifier, cb)
	if status != http.StatusOK || body["token_type"] != "Bearer" || body["access_token"] == "" {
		t.Fatalf("redeem: %d %v", status, body)
	}
	c := verifiedClaims(t, iss, body["id_token"].(string))
	// auth_time is when the user authenticated (the authorization
	// request), not when the code was redeemed.
	if at, ok := c["auth_time"].(float64); !ok || int64(at) != authenticated.Unix() || int64(c["iat"].(float64)) != clock.Now().Unix() {
		t.Errorf("auth_time = %v, iat = %v; want auth_time %d", c["auth_time"], c["iat"], authenticated.Unix())
	}
	for k, want := range map[string]any{
		"iss": iss.URL(), "sub": "alice", "aud": "pamctl", "nonce": "no-1",
		"email": "alice@example.com", "preferred_username": "alice",
	} {
		if c[k] != want {
			t.Errorf("%s = %v, want %v", k, c[k], want)
		}
	}
	if g := toStrings(c["groups"]); !slices.Equal(g, []string{"ml", "security"}) {
		t.Errorf("groups = %v", g)
	}
	status, body = redeem(code, testVerifier, cb)
	wantErr("code reuse", status, body, "invalid_grant")

	status, body = postForm(t, iss.URL()+PathToken, url.Values{"grant_type": {"password"}, "client_id": {"pamctl"}})
	wantErr("password grant", status, body, "unsupported_grant_type")
}

func TestDeviceGrant(t *testing.T) {
	clock := newClock()
	iss, _ := start(t, "", WithClock(clock.Now), WithPollInterval(0), WithDeviceTTL(5*time.Minute))
	start := func(extra url.Values) map[string]any {
		t.Helper()
		form := url.Values{"client_id": {"pamctl"}, "scope": {"openid email"}}
		for k, v := range extra {
			form[k] = v
		}
		status, body := postForm(t, iss.URL()+PathDeviceCode, form)
		if status != http.StatusOK {
			t.Fatalf("device/code: %d %v", status, body)
		}
		return body
	}
	poll := func(dc string) (int, map[string]any) {
		return postForm(t, iss.URL()+PathToken, url.Values{
			"grant_type": {GrantTypeDeviceCode}, "device_code": {dc}, "client_id": {"pamctl"},
		})
	}
	approve := func(q string) int {
		t.Helper()
		resp, err := noRedirect.Get(iss.URL() + PathDevice + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	da := start(nil)
	if da["interval"] != float64(1) || da["verification_uri"] != iss.URL()+PathDevice || da["expires_in"] != float64(300) {
		t.Errorf("device authorization response = %v", da)
	}
	dc, uc := da["device_code"].(string), da["user_code"].(string)
	if status, body := poll(dc); status != http.StatusBadRequest || body["error"] != "authorization_pending" {
		t.Fatalf("before approval: %d %v", status, body)
	}
	if s := approve("user_code=" + url.QueryEscape(uc)); s != http.StatusBadRequest {
		t.Errorf("approval without login_hint: %d", s)
	}
	if s := approve("user_code=ZZZZ-ZZZZ&login_hint=bob"); s != http.StatusBadRequest {
		t.Errorf("approval of unknown code: %d", s)
	}
	// Lower case and no dash still match.
	lower := strings.ToLower(strings.ReplaceAll(uc, "-", ""))
	if s := approve("user_code=" + lower + "&login_hint=bob&groups=ops"); s != http.StatusOK {
		t.Fatalf("approval: %d", s)
	}
	if s := approve("user_code=" + uc + "&login_hint=mallory"); s != http.StatusConflict {
		t.Errorf("second approval: %d", s)
	}
	status, body := poll(dc)
	if status != http.StatusOK {
		t.Fatalf("after approval: %d %v", status, body)
	}
	c := verifiedClaims(t, iss, body["id_token"].(string))
	if c["sub"] != "bob" || c["aud"] != "pamctl" || !slices.Equal(toStrings(c["groups"]), []string{"ops"}) || c["nonce"] != nil {
		t.Errorf("claims = %v", c)
	}
	if status, body := poll(dc); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("second redemption: %d %v", status, body)
	}

	// login_hint given at /device/code is used when the approval names nobody.
	da = start(url.Values{"login_hint": {"carol@corp.example"}, "groups": {"sre"}})
	if s := approve("user_code=" + da["user_code"].(string)); s != http.StatusOK {
		t.Fatalf("approval with default hint: %d", s)
	}
	_, body = poll(da["device_code"].(string))
	c = verifiedClaims(t, iss, body["id_token"].(string))
	if c["sub"] != "carol@corp.example" || c["email"] != "carol@corp.example" || !slices.Equal(toStrings(c["groups"]), []string{"sre"}) {
		t.Errorf("claims = %v", c)
	}

	// Expiry.
	da = start(nil)
	clock.Advance(5 * time.Minute)
	if status, body := poll(da["device_code"].(string)); status != http.StatusBadRequest || body["error"] != "expired_token" {
		t.Errorf("expired: %d %v", status, body)
	}

	if status, body := postForm(t, iss.URL()+PathDeviceCode, url.Values{"client_id": {"pamctl"}, "scope": {"email"}}); status != http.StatusBadRequest || body["error"] != "invalid_scope" {
		t.Errorf("device/code without openid: %d %v", status, body)
	}
}

func TestUserCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c := newUserCode()
		if len(c) != 8 || normalizeUserCode(c) != c {
			t.Fatalf("bad user code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 195 {
		t.Errorf("only %d distinct codes of 200", len(seen))
	}
	if normalizeUserCode("bcdf-ghjk") != "BCDFGHJK" || normalizeUserCode("AEIO-UUUU") != "" {
		t.Error("normalizeUserCode")
	}
}

func TestForgeries(t *testing.T) {
	iss, _ := start(t, "")
	c := Claims{Subject: "mallory"}
	header := func(raw string) map[string]any {
		t.Helper()
		h, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(h, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	none, err := iss.Forge().AlgNone(c)
	if err != nil {
		t.Fatal(err)
	}
	if header(none)["alg"] != "none" || !strings.HasSuffix(none, ".") {
		t.Errorf("alg none token: %v", header(none))
	}

	hs, err := iss.Forge().HS256WithPublicKey(c)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(hs); h["alg"] != "HS256" || h["kid"] != iss.KeyID() {
		t.Errorf("HS256 header = %v", h)
	}

	other, err := iss.Forge().OtherKey(c)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(other); h["alg"] != "RS256" || h["kid"] != iss.KeyID() {
		t.Errorf("other-key header = %v", h)
	}
	jws, err := jose.ParseSigned(other, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(iss.PublicKey()); err == nil {
		t.Error("other-key token verifies with the issuer's key")
	}

	foreign, err := iss.Forge().ForeignIssuer("https://evil.example", c)
	if err != nil {
		t.Fatal(err)
	}
	if fc := verifiedClaims(t, iss, foreign); fc["iss"] != "https://evil.example" {
		t.Errorf("foreign iss = %v", fc["iss"])
	}
}

// A web page in the user's browser cannot drive the dev issuer: cross-site
// navigations to /authorize and /device and cross-origin posts to /token and
// /device/code are refused. The CLI's requests (no Origin, no Sec-Fetch-*)
// and URLs opened in the browser (Sec-Fetch-Site: none) still work.
func TestCrossOriginRequestsRefused(t *testing.T) {
	iss, _ := start(t, "/dev/oidc")
	self := iss.origin()
	do := func(method, path, body string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, iss.URL()+path, strings.NewReader(body))
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	authz := PathAuthorize + "?" + authParams("http://127.0.0.1:9/cb").Encode()
	deviceCode := url.Values{"client_id": {"pamctl"}, "scope": {"openid"}, "login_hint": {"mallory"}, "groups": {"security"}}.Encode()
	token := url.Values{"client_id": {"pamctl"}, "grant_type": {"authorization_code"}, "code": {"x"}}.Encode()
	endpoints := []struct{ method, path, body string }{
		{http.MethodGet, authz, ""},
		{http.MethodGet, PathDevice + "?user_code=BCDF-GHJK&login_hint=mallory&groups=security", ""},
		{http.MethodPost, PathDeviceCode, deviceCode},
		{http.MethodPost, PathToken, token},
	}
	hostile := []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "http://attacker.example"},
		{"Origin": "null"},
		{"Origin": "http://localhost.attacker.example:" + strings.Split(self, ":")[2]},
		{"Referer": "http://attacker.example/page"},
	}
	for _, ep := range endpoints {
		for _, h := range hostile {
			if resp := do(ep.method, ep.path, ep.body, h); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with %v: %s, want 403", ep.method, ep.path, h, resp.Status)
			}
		}
	}
	// What the CLI and a pasted URL send is not refused.
	for _, h := range []map[string]string{nil, {"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "same-origin", "Origin": self}} {
		if resp := do(http.MethodGet, authz, "", h); resp.StatusCode != http.StatusFound {
			t.Errorf("authorize with %v: %s", h, resp.Status)
		}
		if resp := do(http.MethodPost, PathDeviceCode, deviceCode, h); resp.StatusCode != http.StatusOK {
			t.Errorf("device code with %v: %s", h, resp.Status)
		}
	}
	// Discovery and keys are public reads.
	if resp := do(http.MethodGet, PathDiscovery, "", map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusOK {
		t.Errorf("discovery cross-site: %s", resp.Status)
	}
}
