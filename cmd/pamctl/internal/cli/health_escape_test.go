package cli

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// A sink named with a U+202E (names come from the config, or the file's
// path) whose collector answered one reads \u202e exactly once in the text
// of /readyz (which names the check) and in the log (which has the
// error): never raw, never \\u202e.
func TestReadyzAndLogShowASinksTextEscapedOnce(t *testing.T) {
	h, buf, now := testHealth()
	name := "file:/var/log/a\u202elmth.jsonl"
	h.register(checkSink+name, false, "audit sink "+name+" has fallen behind")
	st := auditsink.Status{Name: name, Lag: 3, Since: now.Add(-time.Hour), LastError: "http: x answered 400 Bad Request: \"\u202eno\""}
	h.Fail(checkSink+name, st.Problem(*now, time.Minute))
	rec := httptest.NewRecorder()
	h.readyz(nil)(rec, httptest.NewRequest("GET", "/readyz", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `audit_sink/file:/var/log/a\u202elmth.jsonl: degraded`) || strings.Contains(body, "\u202e") || strings.Contains(body, `\\u202e`) {
		t.Errorf("/readyz does not show the sink's name escaped once:\n%s", body)
	}
	log := buf.String()
	if !strings.Contains(log, `\u202eno`) || !strings.Contains(log, `a\u202elmth`) || strings.Contains(log, "\u202e") || strings.Contains(log, `\\u202e`) {
		t.Errorf("the log does not show the sink's name and error escaped once:\n%s", log)
	}
}
