package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
)

// The admin socket's /readyz answered a static {"status":"ok"} while the
// broker's listener said 503 (a provider key missing, the trail not
// writable, shutting down): a local check through the socket read ready
// when the server was not. It now answers with the broker's checks, the
// same code and text, and no more (never a vaulted key or a raw error).
func TestAdminSocketReadyzIsTheBrokers(t *testing.T) {
	s := startServerOpts(t, nil, AppOptions{ProbeEvery: 20 * time.Millisecond})
	sock := SocketPath(s.app.cfg.DataDir)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	socketReadyz := func() (int, string, string) {
		t.Helper()
		resp, err := hc.Get("http://pamctl/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Cache-Control")
	}
	var last string
	state := func() string { return last }
	// Compared where the state holds still: a failing check's error count
	// moves with every probe, so the lines are compared without it.
	same := func(wantCode int, has, hasNot string) {
		t.Helper()
		waitFor(t, func() bool {
			bc, bb := getReadyz(t, s.app.BrokerURL())
			sc, sb, cc := socketReadyz()
			last = fmt.Sprintf("broker %d %q; socket %d %q (Cache-Control %q)", bc, bb, sc, sb, cc)
			return bc == wantCode && sc == wantCode && cc == "no-store" &&
				firstLines(bb) == firstLines(sb) && strings.Contains(sb, has) && (hasNot == "" || !strings.Contains(sb, hasNot))
		}, state)
	}
	same(http.StatusServiceUnavailable, "provider_key/openai: failing", "")
	const key = "sk-test-admin-readyz-0123456789abcdef"
	if _, err := api.NewSocketClient(sock).VaultSet(t.Context(), "openai", []byte(key)); err != nil {
		t.Fatal(err)
	}
	same(http.StatusOK, "ok\n", "provider_key")
	if _, sb, _ := socketReadyz(); sb != "ok\n" || strings.Contains(sb, key) {
		t.Fatalf("socket /readyz when ready: %q, want exactly \"ok\\n\"", sb)
	}
}

// firstLines is a /readyz body with each check's line cut before its
// "since", which moves with every probe.
func firstLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		name, _, _ := strings.Cut(l, " since ")
		out = append(out, name)
	}
	return strings.Join(out, "\n")
}
