package api_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
)

type enrollments struct {
	mu sync.Mutex
	m  map[string]link.Enrollment
}

func (s *enrollments) PutEnrollment(_ context.Context, e *link.Enrollment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[e.ID] = *e
	return nil
}

func (s *enrollments) GetEnrollment(_ context.Context, id string) (*link.Enrollment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", link.ErrNotFound, id)
	}
	return &e, nil
}

func (s *enrollments) ListEnrollments(context.Context) ([]*link.Enrollment, error) { return nil, nil }

func (s *enrollments) UpdateEnrollment(_ context.Context, id string, fn func(*link.Enrollment) error) (*link.Enrollment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", link.ErrNotFound, id)
	}
	if err := fn(&e); err != nil {
		return nil, err
	}
	s.m[id] = e
	return &e, nil
}

type noGrants struct{}

func (noGrants) ProxyGrant(context.Context, link.Caller, string) (time.Time, error) {
	return time.Time{}, fmt.Errorf("%w: grant does not include proxy:serve", link.ErrForbidden)
}

type noKeys struct{}

func (noKeys) ProviderKeys(context.Context) (map[string]string, error) { return nil, nil }
func (noKeys) KeysVersion(context.Context) (string, error)             { return "v", nil }

// The proxies' routes keep the API's rules: a body cap per route, a broker
// session, and on top the enrollment the call is made for.
func TestProxyRoutesCapsAndAuth(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	a := *ta.api
	a.Proxies = &link.Registry{Store: &enrollments{m: map[string]link.Enrollment{}}, Grants: noGrants{}, Revoked: ta.svc, Keys: noKeys{}, Audit: ta.api.Audit,
		Config: func() link.ProxyConfig { return link.ProxyConfig{Version: "c"} }}
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = a.HTTPServer(a.Public())
	hs.Start()
	defer hs.Close()
	sess := ta.workloadSession(t, "proxy-a")
	do := func(method, path, body string, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	authed := map[string]string{"Authorization": "Bearer " + sess}
	for _, r := range []struct {
		method, path string
		limit        int
	}{
		{"POST", "/v1/proxies/enroll", api.MaxRequestBody},
		{"POST", "/v1/proxies/hold", api.MaxHoldBody},
		{"POST", "/v1/proxies/config", api.MaxRequestBody},
		{"GET", "/v1/proxies/stream", 0},
		{"GET", "/v1/proxies/keys", 0},
		{"GET", "/v1/proxies/config", 0},
	} {
		if code := do(r.method, r.path, strings.Repeat("a", r.limit+1), authed); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s over its cap: %d", r.method, r.path, code)
		}
		if r.method == "GET" {
			if code := do(r.method, r.path, "", nil); code != http.StatusUnauthorized {
				t.Errorf("%s %s without a session: %d", r.method, r.path, code)
			}
			if code := do(r.method, r.path, "", authed); code != http.StatusForbidden {
				t.Errorf("%s %s without an enrollment: %d", r.method, r.path, code)
			}
			withID := map[string]string{"Authorization": "Bearer " + sess, link.HeaderProxyID: "nope"}
			if code := do(r.method, r.path, "", withID); code != http.StatusNotFound {
				t.Errorf("%s %s for an unknown enrollment: %d", r.method, r.path, code)
			}
		}
	}
	// No proxy:serve grant: refused.
	body := `{"grant":"req_x","public_key":"` + base64.StdEncoding.EncodeToString(newProxyKey(t)) + `"}`
	if code := do("POST", "/v1/proxies/enroll", body, authed); code != http.StatusForbidden {
		t.Errorf("enroll without proxy:serve: %d", code)
	}
	// Another Host is refused, as on every route.
	req, _ := http.NewRequest("GET", hs.URL+"/v1/proxies/stream", nil)
	req.Host = "evil.example"
	req.Header.Set("Authorization", "Bearer "+sess)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d", resp.StatusCode)
	}
}

func newProxyKey(t *testing.T) []byte {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv.PublicKey().Bytes()
}

type liveGrants struct{}

func (liveGrants) ProxyGrant(context.Context, link.Caller, string) (time.Time, error) {
	return time.Now().Add(time.Hour), nil
}

// A proxy's identity ships only proxy events, contiguously: anything else
// is a 400 with nothing of the batch in the trail (and the trail's
// appends never fail on it); an unusable X25519 key is refused at
// enrollment, before any keys route can fail on it.
func TestProxyAuditShipmentsAreCheckedWhole(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	a := *ta.api
	trail := ta.api.Audit.(link.AuditLog)
	a.Proxies = &link.Registry{Store: &enrollments{m: map[string]link.Enrollment{}}, Grants: liveGrants{}, Revoked: ta.svc, Keys: noKeys{}, Audit: trail,
		Config: func() link.ProxyConfig { return link.ProxyConfig{Version: "c"} }}
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = a.HTTPServer(a.Public())
	hs.Start()
	defer hs.Close()
	sess := ta.workloadSession(t, "proxy-a")
	do := func(method, path string, body any, id string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, http.NoBody)
		if body != nil {
			raw, _ := json.Marshal(body)
			req, _ = http.NewRequest(method, hs.URL+path, bytes.NewReader(raw))
		}
		req.Header.Set("Authorization", "Bearer "+sess)
		if id != "" {
			req.Header.Set(link.HeaderProxyID, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	if code := do("POST", "/v1/proxies/enroll", link.EnrollRequest{Grant: "req_x", PublicKey: make([]byte, 32)}, "", nil); code != http.StatusBadRequest {
		t.Fatalf("enroll with the all-zero key: %d", code)
	}
	var e link.Enrollment
	if code := do("POST", "/v1/proxies/enroll", link.EnrollRequest{Grant: "req_x", PublicKey: newProxyKey(t)}, "", &e); code != http.StatusOK {
		t.Fatalf("enroll: %d", code)
	}
	if code := do("GET", "/v1/proxies/keys", nil, e.ID, nil); code != http.StatusOK {
		t.Fatalf("keys: %d", code)
	}
	count := func() (n int, forged bool) {
		trail.Range(context.Background(), 1, func(ev audit.Event) bool {
			n++
			forged = forged || ev.Type != audit.TypeProxyCall && ev.Details["proxy"] != ""
			return true
		})
		return n, forged
	}
	before, _ := count()
	call := func(seq uint64, ev audit.Event) link.SpooledEvent { return link.SpooledEvent{Seq: seq, Event: ev} }
	ok := audit.Event{Type: audit.TypeProxyCall}
	for name, b := range map[string][]link.SpooledEvent{
		"approval":   {call(1, ok), call(2, audit.Event{Type: audit.TypeRequestApproved, Request: "req_forged"})},
		"vault":      {call(1, audit.Event{Type: audit.TypeVaultSet, Target: "openai", Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})},
		"anchor":     {call(1, audit.Event{Type: audit.TypeAuditAnchor, Details: map[string]string{"anchor": "{"}})},
		"login":      {call(1, audit.Event{Type: "login", Actor: &audit.Actor{Subject: "x", Kind: "robot"}})},
		"actor kind": {call(1, audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "x", Kind: "robot"}})},
		"jump":       {call(1000000, ok)},
	} {
		if code := do("POST", "/v1/proxies/audit", link.AuditBatch{Events: b}, e.ID, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d", name, code)
		}
	}
	if after, forged := count(); after != before || forged {
		t.Fatalf("refused shipments changed the trail: %d → %d events, forged %v", before, after, forged)
	}
	var ack link.AuditAck
	if code := do("POST", "/v1/proxies/audit", link.AuditBatch{Events: []link.SpooledEvent{call(1, ok), call(2, ok)}}, e.ID, &ack); code != http.StatusOK || ack.Acked != 2 {
		t.Fatalf("the proxy's own events: %d %+v", code, ack)
	}
	if after, _ := count(); after != before+2 {
		t.Fatalf("trail: %d → %d", before, after)
	}
}
