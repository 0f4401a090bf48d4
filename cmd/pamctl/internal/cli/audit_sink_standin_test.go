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
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, []byte("audit:\n  sinks:\n    - { type: http, url: "+coll.URL+"/ingest }\n"), 0o600)
	t.Setenv("PAMCTL_CONFIG", conf)
	s := startServerWith(t, nil)
	for i := 0; i < auditsink.StandInAlarm; i++ {
		s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	}
	var st []auditsink.Status
	eventually(t, "a run of stand-ins", 15*time.Second, func() bool {
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks")
		if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 1 {
			t.Fatalf("%v\n%s", err, r.out)
		}
		return st[0].RecentStandIns >= auditsink.StandInAlarm && st[0].Lag == 0
	})
	if st[0].LastError != "" || st[0].Oversize < auditsink.StandInAlarm {
		t.Fatalf("status: %+v", st[0])
	}
	table := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (table)")
	if !strings.Contains(table.out, "events went as stand-ins") {
		t.Fatalf("audit sinks table:\n%s", table.out)
	}
}
