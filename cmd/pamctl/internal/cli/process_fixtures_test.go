package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// workloadIdP runs an OIDC issuer in this process for the pamctl child
// processes of a test. mint writes an hour-long ID token for sub (with
// groups) to dir/sub.jwt and returns the file.
func workloadIdP(t *testing.T, dir string) (issuerURL string, mint func(sub string, groups ...string) string) {
	t.Helper()
	idp := httptest.NewUnstartedServer(nil)
	iss, err := devissuer.New("http://" + idp.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	idp.Config.Handler = iss
	idp.Start()
	t.Cleanup(idp.Close)
	return idp.URL, func(sub string, groups ...string) string {
		raw, err := iss.Mint(devissuer.Claims{Subject: sub, Groups: groups, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, sub+".jwt")
		if err := os.WriteFile(f, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// keyCheckingUpstream is an OpenAI-shaped upstream that answers a chat
// completion "ok" to callers presenting testProviderKey, 401 otherwise.
func keyCheckingUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testProviderKey {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(up.Close)
	return up
}
