package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// GET /v1/audit/sinks answers the admin socket (and audit:read sessions)
// with each sink's status, and refuses a session without audit:read.
func TestAuditSinksRoute(t *testing.T) {
	ta := newTestAPI(t, 0, 0)
	ta.api.Sinks = func() []auditsink.Status {
		return []auditsink.Status{{Name: "syslog:tcp://siem:514", Type: "syslog", Cursor: auditsink.Cursor{Seq: 7}, Last: 9, Lag: 2, LastError: "down", Running: true}}
	}
	w := httptest.NewRecorder()
	ta.api.Admin().ServeHTTP(w, httptest.NewRequest("GET", "/v1/audit/sinks", nil))
	var got []auditsink.Status
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != 200 || err != nil || len(got) != 1 || got[0].Lag != 2 || got[0].LastError != "down" {
		t.Fatalf("admin: %d %s", w.Code, w.Body)
	}

	tok := ta.session(t, "alice", "ml")
	req, _ := http.NewRequest("GET", ta.srv.URL+"/v1/audit/sinks", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Host = "pam.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("session without audit:read: %d", resp.StatusCode)
	}
}
