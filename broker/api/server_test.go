package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

type testAPI struct {
	srv  *httptest.Server
	api  *api.Server
	svc  *broker.Service
	iss  *devissuer.Issuer
	wl   *devissuer.Issuer // a workload issuer (workload: true), named "ci"
	addr string
}

// newTestAPI serves the broker's public API (with the dev issuer mounted at
// /dev/oidc, as serve --dev does) over a real bbolt store, with the given
// timeouts.
func newTestAPI(t *testing.T, header, body time.Duration) *testAPI {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rk, err := store.NewRecordKey(make([]byte, 32)); err == nil {
		db.SetRecordKey(rk)
	}
	t.Cleanup(func() { db.Close() })
	mk, _ := vault.GenerateMasterKey()
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := token.LoadKeyring(ctx, db, v.Sealer(), 8*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := db.AuditLog(store.AuditOptions{Signer: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	iss, err := devissuer.New(base+"/dev/oidc", devissuer.WithClients("pamctl"))
	if err != nil {
		t.Fatal(err)
	}
	wl, err := devissuer.New(base+"/dev/ci", devissuer.WithClients("pamctl"))
	if err != nil {
		t.Fatal(err)
	}
	idps := http.NewServeMux()
	idps.Handle("/dev/oidc/", iss)
	idps.Handle("/dev/ci/", wl)
	idv, err := oidc.NewVerifier([]oidc.IssuerConfig{{Name: "dev", URL: iss.URL(), ClientID: "pamctl"}, {Name: "ci", URL: wl.URL(), ClientID: "pamctl", Workload: true}},
		&http.Client{Transport: handlerTransport{idps}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := broker.New(ctx, broker.Config{Store: db, IDTokens: idv, Keys: keys, Issuer: base, Audit: lg,
		Policies: policy.Set{{Name: "ml", Subjects: policy.Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:*"},
			Approval: policy.Approval{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := &api.Server{Broker: svc, Keys: keys, Audit: lg, Info: func() api.Info { return api.Info{} },
		AdminService: &broker.Admin{Vault: v, Keys: keys, Audit: lg, Via: broker.ViaSocket},
		Extra:        map[string]http.Handler{"/dev/oidc/": iss, "/dev/ci/": wl},
		Hostnames:    []string{"pam.example.com"}, HeaderTimeout: header, BodyTimeout: body}
	hs.Config = a.HTTPServer(a.Public())
	hs.Start()
	t.Cleanup(hs.Close)
	return &testAPI{srv: hs, api: a, svc: svc, iss: iss, wl: wl, addr: hs.Listener.Addr().String()}
}

// handlerTransport serves the verifier's discovery and JWKS fetches in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

func (ta *testAPI) session(t *testing.T, sub string, groups ...string) string {
	t.Helper()
	raw, err := ta.iss.Mint(devissuer.Claims{Subject: sub, Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ta.svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		t.Fatal(err)
	}
	return sess.Token
}

// workloadSession logs sub in from the workload issuer ("ci", kind
// service), as a local proxy logs in with its ID token file.
func (ta *testAPI) workloadSession(t *testing.T, sub string) string {
	t.Helper()
	raw, err := ta.wl.Mint(devissuer.Claims{Subject: sub})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ta.svc.Login(context.Background(), raw, "", audit.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Identity.Kind != "service" {
		t.Fatalf("workload session of kind %q", sess.Identity.Kind)
	}
	return sess.Token
}

// raw sends head (request line and headers, without the blank line) and
// body over a fresh connection and returns the status code, or 0 when the
// server closed the connection without answering, and how long it took.
func (ta *testAPI) raw(t *testing.T, head string, body []byte, wait time.Duration) (int, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", ta.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "%s\r\nHost: %s\r\n\r\n", head, ta.addr)
	c.Write(body)
	c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: no answer within %s", strings.SplitN(head, "\r\n", 2)[0], wait)
		}
		return 0, time.Since(start)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// Every route caps its body to what it needs; a declared length over the
// cap is refused at once, before any of the body is read.
func TestBodiesCappedPerRoute(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	sess := ta.session(t, "alice", "ml")
	routes := []struct {
		method, path string
		limit        int
		auth         bool
	}{
		{"POST", "/v1/login", api.MaxLoginBody, false},
		{"POST", "/v1/requests", api.MaxRequestBody, true},
		{"POST", "/v1/requests/req_x/approve", api.MaxRequestBody, true},
		{"POST", "/v1/requests/req_x/deny", api.MaxRequestBody, true},
		{"POST", "/v1/token", api.MaxEmptyBody, true},
		{"POST", "/v1/logout", api.MaxEmptyBody, true},
		{"POST", "/v1/grants/req_x/revoke", api.MaxEmptyBody, true},
		{"GET", "/v1/whoami", 0, true},
		{"GET", "/v1/sessions", 0, true},
		{"POST", "/v1/sessions/revoke", api.MaxRevokeSessionsBody, true},
		{"GET", "/v1/requests", 0, true},
		{"GET", "/v1/audit/events", 0, true},
		{"GET", "/v1/info", 0, false},
	}
	for _, r := range routes {
		head := fmt.Sprintf("%s %s HTTP/1.1", r.method, r.path)
		if r.auth {
			head += "\r\nAuthorization: Bearer " + sess
		}
		// Declared too large: refused without waiting for the body.
		code, took := ta.raw(t, head+"\r\nContent-Length: 104857600", nil, 3*time.Second)
		if code != http.StatusRequestEntityTooLarge || took > time.Second {
			t.Errorf("%s %s, 100 MiB declared: %d after %s, want 413 at once", r.method, r.path, code, took)
		}
		// Chunked past the cap: cut at the cap.
		big := strings.Repeat("a", r.limit+1)
		chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(big), big)
		if code, _ := ta.raw(t, head+"\r\nTransfer-Encoding: chunked", []byte(chunked), 3*time.Second); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s, chunked %d bytes: %d, want 413", r.method, r.path, len(big), code)
		}
	}
	// Within the cap, the handler sees the body (and says what is wrong with it).
	body := `{"id_token":"` + strings.Repeat("x", api.MaxLoginBody-64) + `"}`
	resp, err := http.Post(ta.srv.URL+"/v1/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login body within the cap: %s, want 401 (a bad token)", resp.Status)
	}
}

// A body that arrives too slowly is cut within the body timeout, and slow
// headers within the header timeout; many at once pin nothing for long.
func TestSlowClientsCut(t *testing.T) {
	ta := newTestAPI(t, 300*time.Millisecond, 500*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ta.addr)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			start := time.Now()
			if i%2 == 0 { // stalled body
				fmt.Fprintf(c, "POST /v1/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"id_token\":\"", ta.addr, api.MaxLoginBody)
			} else { // stalled headers
				fmt.Fprintf(c, "POST /v1/login HTTP/1.1\r\nHost: %s\r\n", ta.addr)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c) // until the server hangs up
			if took := time.Since(start); took > 2*time.Second {
				errs <- fmt.Sprintf("slow client %d held for %s", i, took)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// A long-poll runs past the body timeout: its read deadline is lifted once
// the (bodiless) request is in.
func TestLongPollOutlivesBodyTimeout(t *testing.T) {
	ta := newTestAPI(t, 300*time.Millisecond, 300*time.Millisecond)
	sess := ta.session(t, "alice", "ml")
	c := &api.Client{BaseURL: ta.srv.URL, Token: sess}
	r, err := c.CreateRequest(context.Background(), api.CreateRequest{Scopes: []string{"model:gpt-4o"}})
	if err != nil || r.State != broker.StatePending {
		t.Fatalf("request: %v %+v", err, r)
	}
	start := time.Now()
	got, err := c.Request(context.Background(), r.ID, 1200*time.Millisecond)
	if err != nil || got.State != broker.StatePending {
		t.Fatalf("wait: %v %+v", err, got)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("long-poll cut after %s by the body timeout", took)
	}
}

// The broker answers only to its own names: a page that rebinds its DNS
// name to 127.0.0.1 can drive neither the API nor the dev issuer.
func TestHostCheck(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	_, port, _ := net.SplitHostPort(ta.addr)
	get := func(host, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", ta.srv.URL+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, h := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "[::1]:" + port, "pam.example.com", "PAM.Example.com.:443", "10.1.2.3:8700"} {
		if resp := get(h, "/v1/info"); resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s: %s", h, resp.Status)
		}
	}
	for _, h := range []string{"attacker.example:" + port, "localhost.attacker.example", "127.0.0.1.nip.io:" + port, "2130706433:" + port, "pam.example.com.attacker.example", "localhost:" + port + ".attacker.example", "localhost:99999", "127.0.0.1:0x50"} {
		for _, path := range []string{"/v1/info", "/dev/oidc/.well-known/openid-configuration", "/dev/oidc/device?user_code=BCDFGHJK&login_hint=root"} {
			if resp := get(h, path); resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("Host %s %s: %s, want 421", h, path, resp.Status)
			}
		}
	}
	// A rebinding page's POST to the dev issuer never reaches it.
	req, _ := http.NewRequest("POST", ta.srv.URL+"/dev/oidc/device/code", strings.NewReader("client_id=pamctl&scope=openid&login_hint=root&groups=security"))
	req.Host = "attacker.example:" + port
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body.Error.Message, "broker.hostnames") {
		t.Fatalf("rebinding POST: %s %+v", resp.Status, body)
	}
}

// Hundreds of unauthenticated clients that each send a large login body
// and stall hold a bounded amount of memory (about a login body's cap
// each, until they are cut), not what they sent.
func TestSlowLoginsHoldBoundedMemory(t *testing.T) {
	ta := newTestAPI(t, time.Second, 3*time.Second)
	const clients = 300
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	chunk := []byte(strings.Repeat("a", 16<<10))
	for range clients {
		c, err := net.Dial("tcp", ta.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		// Send 256 KiB chunked, so only the cap stops it, and stall. (The
		// server hangs up at the cap; later writes fail, which is fine.)
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "POST /v1/login HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", ta.addr)
		for range 16 {
			if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
				break
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let the server read what was sent
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	grown := int64(during.HeapInuse) - int64(before.HeapInuse)
	if limit := int64(clients) * 128 << 10; grown > limit { // 37.5 MiB; a 1 MiB cap held ~2 MiB each
		t.Fatalf("%d stalled logins hold %d MiB (bound %d MiB)", clients, grown>>20, limit>>20)
	}
	t.Logf("%d stalled logins: heap grew %.1f MiB", clients, float64(grown)/(1<<20))
}

// TestBearerSchemeIsCaseInsensitive: the auth scheme is case-insensitive
// (RFC 9110 11.1), as the proxy reads it; anything but a bearer token is
// refused.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	ta := newTestAPI(t, 0, 0)
	tok := ta.session(t, "alice", "ml")
	for h, want := range map[string]int{
		"Bearer " + tok:  http.StatusOK,
		"bearer " + tok:  http.StatusOK,
		"BEARER  " + tok: http.StatusOK,
		"Basic " + tok:   http.StatusUnauthorized,
		"Bearer":         http.StatusUnauthorized,
		"Bearer ":        http.StatusUnauthorized,
		"Bearer" + tok:   http.StatusUnauthorized,
		"Bearerx " + tok: http.StatusUnauthorized,
		"Bearer x" + tok: http.StatusUnauthorized,
	} {
		req, _ := http.NewRequest("GET", ta.srv.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %.12q…: %d, want %d", h, resp.StatusCode, want)
		}
	}
}

// TestBodiesAreStrictJSON: encoding/json reads a member name in any case,
// lets the last of two members win and ignores nothing after the value.
// A filter in front of the broker may read such a body otherwise (the
// first "scopes", only lower case), so the API refuses them.
func TestBodiesAreStrictJSON(t *testing.T) {
	ta := newTestAPI(t, 0, 0)
	tok := ta.session(t, "alice", "ml")
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", ta.srv.URL+"/v1/requests", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(`{"scopes":["model:gpt-4o"],"reason":"eval"}`); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("a plain body: %d %s", code, body)
	}
	for body, want := range map[string]string{
		`{"scopes":["model:gpt-4o"],"scopes":["model:o1"]}`:     `\"scopes\" is given twice`,
		`{"scopes":["model:gpt-4o"],"Scopes":["model:o1"]}`:     `given twice (as \"scopes\" and \"Scopes\")`,
		`{"SCOPES":["model:gpt-4o"]}`:                           `names are case-sensitive; write \"scopes\"`,
		`{"scopes":["model:gpt-4o"]} {"scopes":["model:o1"]}`:   "data after the JSON value",
		`{"scopes":["model:gpt-4o"]}x`:                          "data after the JSON value",
		`{"scopes":["model:gpt-4o"],"reason":"a","reason":"b"}`: `\"reason\" is given twice`,
		`{"scopes":["model:gpt-4o"],"unknown":1}`:               "unknown field",
	} {
		code, got := post(body)
		if code != http.StatusBadRequest || !strings.Contains(got, want) {
			t.Errorf("%s: %d %s, want 400 with %q", body, code, got, want)
		}
	}
}
