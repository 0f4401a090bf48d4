package link

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The gate's 503 is read by agents: whatever the broker answered a
// refused or failed enrollment, the answer never carries the proxy's
// enrollment id (the broker's wording names it; the proxy's log keeps it).
func TestGateRefusalNamesNoEnrollmentID(t *testing.T) {
	const id = "3f9c2a71d04b8e65"
	for _, tc := range []struct {
		name   string
		status int
		msg    string
		want   string
	}{
		{"revoked", http.StatusForbidden, fmt.Sprintf("forbidden: proxy %s was revoked by an admin", id), "revoked by an admin"},
		{"grant revoked", http.StatusForbidden, fmt.Sprintf("forbidden: the proxy:serve grant of proxy %s was revoked", id), "refused this proxy's enrollment"},
		{"another identity", http.StatusForbidden, fmt.Sprintf("forbidden: enrollment %s belongs to another identity", id), "refused this proxy's enrollment"},
		{"broker failure", http.StatusServiceUnavailable, fmt.Sprintf("store: enrollment %s: unavailable", id), "cannot enroll with the broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch r.URL.Path {
				case "/v1/login":
					io.WriteString(w, `{"token":"sess"}`)
				case "/v1/requests":
					io.WriteString(w, `{"id":"g1","state":"approved"}`)
				default:
					code := "forbidden"
					if tc.status != http.StatusForbidden {
						code = "unavailable"
					}
					w.WriteHeader(tc.status)
					json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": tc.msg}})
				}
			}))
			defer broker.Close()
			tok := filepath.Join(t.TempDir(), "token")
			os.WriteFile(tok, []byte("id-token"), 0o600)
			c, err := NewClient(ClientOptions{BrokerURL: broker.URL, IDTokenFile: tok, Spool: &memSpool{enrol: id},
				Retry: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.Run(ctx) }()
			defer func() { cancel(); <-done }()
			h := c.Gate(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
			deadline := time.Now().Add(5 * time.Second)
			for {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil))
				body := rec.Body.String()
				if rec.Code == http.StatusServiceUnavailable && strings.Contains(body, tc.want) {
					if strings.Contains(body, id) || !strings.Contains(body, `"code":"proxy_not_enrolled"`) {
						t.Fatalf("503 for agents: %s", body)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %q refusal: %d %s", tc.want, rec.Code, body)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
