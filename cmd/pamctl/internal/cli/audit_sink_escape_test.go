package cli

import (
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

// A collector's error answer with a U+202E in it reads \u202e exactly once
// in `pamctl audit sinks` (never \\u202e: the server keeps the answer raw,
// the table escapes it), and is the raw character in `-o json`.
func TestAuditSinksShowsACollectorsAnswerEscapedOnce(t *testing.T) {
	coll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "\u202eno", http.StatusBadRequest)
	}))
	defer coll.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yaml")
	os.WriteFile(conf, []byte("audit:\n  sinks:\n    - { type: http, url: "+coll.URL+"/i }\n"), 0o600)
	t.Setenv("PAMCTL_CONFIG", conf)
	s := startServerWith(t, nil)
	s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	var st []auditsink.Status
	eventually(t, "the collector's answer in the status", 15*time.Second, func() bool {
		r := s.as(t, "admin", "", "audit", "sinks", "-o", "json").must(t, "audit sinks")
		if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st) != 1 {
			t.Fatalf("%v\n%s", err, r.out)
		}
		return st[0].LastError != ""
	})
	if !strings.Contains(st[0].LastError, "\"\u202eno\n\"") {
		t.Errorf("-o json does not give the collector's answer exactly: %q", st[0].LastError)
	}
	table := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (table)")
	if !strings.Contains(table.out, `"\u202eno\n"`) || strings.Contains(table.out, `\\u202e`) || strings.Contains(table.out, "\u202e") {
		t.Errorf("the table does not show the answer's U+202E escaped once:\n%s", table.out)
	}
}
