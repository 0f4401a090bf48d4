package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
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
	sess := ta.session(t, "proxy-a")
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
	body := `{"grant":"req_x","public_key":"` + strings.Repeat("A", 43) + `="}`
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
