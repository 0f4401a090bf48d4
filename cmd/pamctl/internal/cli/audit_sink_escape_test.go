package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
	s := startWithHTTPSink(t, coll.URL+"/i")
	s.as(t, "admin", "sk-test-0123456789abcdef", "vault", "set", "key1").must(t, "vault set")
	st := waitForSink(t, s, "the collector's answer in the status", func(st auditsink.Status) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, "\"\u202eno\n\"") {
		t.Errorf("-o json does not give the collector's answer exactly: %q", st.LastError)
	}
	table := s.as(t, "admin", "", "audit", "sinks").must(t, "audit sinks (table)")
	if !strings.Contains(table.out, `"\u202eno\n"`) || strings.Contains(table.out, `\\u202e`) || strings.Contains(table.out, "\u202e") {
		t.Errorf("the table does not show the answer's U+202E escaped once:\n%s", table.out)
	}
}
