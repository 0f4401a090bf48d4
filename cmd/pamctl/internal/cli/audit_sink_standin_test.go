package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// A collector that takes pamctl's stand-ins and heads but refuses every
// event (a field mapping the events break) gets the whole trail as
// stand-ins: `pamctl audit sinks` says so in its table and -o json, rather
// than showing a healthy sink with no last error.
func TestAuditSinksShowsARunOfStandIns(t *testing.T) {
	coll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line := sc.Bytes(); bytes.HasPrefix(line, []byte(`{"seq":`)) && !bytes.Contains(line, []byte(`"type":"audit.oversize"`)) {
				http.Error(w, `{"error":"mapper_parsing_exception"}`, http.StatusBadRequest)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer coll.Close()
	s := startWithHTTPSink(t, coll.URL+"/ingest")
	for i := 0; i < auditsink.StandInAlarm; i++ {
		s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	}
	st := waitForSink(t, s, "a run of stand-ins", func(st auditsink.Status) bool {
		return st.RecentStandIns >= auditsink.StandInAlarm && st.Lag == 0
	})
	if st.LastError != "" || st.Oversize < auditsink.StandInAlarm {
		t.Fatalf("status: %+v", st)
	}
	table := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (table)")
	if !strings.Contains(table.out, "events went as stand-ins") {
		t.Fatalf("audit sinks table:\n%s", table.out)
	}
}

// startWithHTTPSink starts a server whose one audit sink posts to url.
func startWithHTTPSink(t *testing.T, url string) *testServer {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(conf, []byte("audit:\n  sinks:\n    - { type: http, url: "+url+" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PAMCTL_CONFIG", conf)
	return startServerWith(t, nil)
}

// waitForSink reads `pamctl audit sinks -o json` until the one sink's
// status passes ok, and returns it.
func waitForSink(t *testing.T, s *testServer, what string, ok func(auditsink.Status) bool) auditsink.Status {
	t.Helper()
	var st []auditsink.Status
	eventually(t, what, 15*time.Second, func() bool {
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks")
		if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 1 {
			t.Fatalf("%v\n%s", err, r.out)
		}
		return ok(st[0])
	})
	return st[0]
}
