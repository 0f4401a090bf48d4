package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/link"
)

type someKeys struct{}

func (someKeys) ProviderKeys(context.Context) (map[string]string, error) {
	return map[string]string{"openai": "sk-test-not-for-persons"}, nil
}
func (someKeys) KeysVersion(context.Context) (string, error) { return "v", nil }

// proxy:serve hands out every vaulted provider key: a person (kind user)
// with an approved proxy:serve grant is refused at POST /v1/proxies/enroll
// and, with an enrollment made before this check (as the store kept it),
// at GET /v1/proxies/keys and every other proxy route; a workload (kind
// service) enrolls and gets the sealed keys.
func TestProxyRoutesRefusePersons(t *testing.T) {
	ta := newTestAPI(t, time.Second, 5*time.Second)
	a := *ta.api
	st := &enrollments{m: map[string]link.Enrollment{}}
	a.Proxies = &link.Registry{Store: st, Grants: liveGrants{}, Revoked: ta.svc, Keys: someKeys{}, Audit: ta.api.Audit.(link.AuditLog),
		Config: func() link.ProxyConfig { return link.ProxyConfig{Version: "c"} }}
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = a.HTTPServer(a.Public())
	hs.Start()
	defer hs.Close()
	do := func(sess, method, path string, body any, id string, out any) (int, string) {
		t.Helper()
		var rd io.Reader = http.NoBody
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, hs.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+sess)
		if id != "" {
			req.Header.Set(link.HeaderProxyID, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, string(raw)
	}
	alice := ta.session(t, "alice", "ml")
	code, body := do(alice, "POST", "/v1/proxies/enroll", link.EnrollRequest{Grant: "req_x", PublicKey: newProxyKey(t)}, "", nil)
	if code != http.StatusForbidden || !strings.Contains(body, "workload") || !strings.Contains(body, "provider key") {
		t.Fatalf("a person enrolled: %d %s", code, body)
	}
	// An enrollment alice made before the upgrade.
	st.PutEnrollment(context.Background(), &link.Enrollment{ID: "alice-old", Subject: "alice", Issuer: "dev", Grant: "req_x", PublicKey: newProxyKey(t),
		Enrolled: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	for _, r := range []struct{ method, path string }{{"GET", "/v1/proxies/keys"}, {"GET", "/v1/proxies/config"}, {"GET", "/v1/proxies/stream"}} {
		if code, body := do(alice, r.method, r.path, nil, "alice-old", nil); code != http.StatusForbidden || !strings.Contains(body, "workload") {
			t.Errorf("%s %s for a person's old enrollment: %d %s", r.method, r.path, code, body)
		}
	}
	wl := ta.workloadSession(t, "proxy-a")
	var e link.Enrollment
	if code, body := do(wl, "POST", "/v1/proxies/enroll", link.EnrollRequest{Grant: "req_x", PublicKey: newProxyKey(t)}, "", &e); code != http.StatusOK {
		t.Fatalf("a workload was refused: %d %s", code, body)
	}
	var sk link.SealedKeys
	if code, body := do(wl, "GET", "/v1/proxies/keys", nil, e.ID, &sk); code != http.StatusOK || len(sk.Sealed) == 0 {
		t.Fatalf("keys for the workload: %d %s", code, body)
	}
}
