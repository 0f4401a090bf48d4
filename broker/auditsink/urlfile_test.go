package auditsink_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// url_file keeps a collector's URL, token and all, out of the config: the
// sink is named after the file, shown as the file, never shows any part
// of the URL's path (not only what looks like a token) even when the
// collector echoes it, and follows a rotated URL without losing its
// cursor.
func TestURLFileKeepsTheURLSecret(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	var mu sync.Mutex
	paths := map[string]int{}
	fail := true
	coll.setHandler(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "no source at "+r.URL.Path+" (host "+r.Host+")", http.StatusServiceUnavailable)
			return
		}
		for _, line := range bytes.Split(body, []byte("\n")) {
			if bytes.HasPrefix(line, []byte(`{"seq":`)) {
				paths[r.URL.Path]++
			}
		}
	})
	dir := t.TempDir()
	file := filepath.Join(dir, "sumo-url")
	write := func(path string) {
		t.Helper()
		if err := os.WriteFile(file, []byte("\n  http://"+coll.addr+path+"  \n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// "acme-prod" is no token by the rule of thumb; with url_file it is
	// hidden all the same.
	write("/receiver/v1/acme-prod/ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR")
	sink := auditsink.SinkConfig{Type: "http", URLFile: file}
	if err := sink.Validate(); err != nil {
		t.Fatal(err)
	}
	tr.add(t, 3, "x")
	m := tr.start(t, []auditsink.SinkConfig{sink}, auditsink.AnchorConfig{})
	waitFor(t, "the collector's error", func() bool { return strings.Contains(m.Status()[0].LastError, "503") })
	st := m.Status()[0]
	shown := fmt.Sprintf("%+v", st)
	for _, secret := range []string{"ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR", "acme-prod", "receiver"} {
		if strings.Contains(shown, secret) {
			t.Errorf("status shows %q: %s", secret, shown)
		}
	}
	if st.Name != "http:url_file:"+file || st.Destination != "url_file:"+file || !strings.Contains(st.LastError, "url_file "+file) {
		t.Errorf("status: %s", shown)
	}

	mu.Lock()
	fail = false
	mu.Unlock()
	waitFor(t, "3 delivered", func() bool { return m.Status()[0].Cursor.Seq == 3 })
	write("/receiver/v1/http/RotatedToken0123456789abcdefXYZ")
	tr.add(t, 2, "y")
	waitFor(t, "5 delivered", func() bool { return m.Status()[0].Cursor.Seq == 5 })
	mu.Lock()
	defer mu.Unlock()
	if paths["/receiver/v1/acme-prod/ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"] != 3 || paths["/receiver/v1/http/RotatedToken0123456789abcdefXYZ"] != 2 {
		t.Errorf("events by path: %v", paths)
	}
}

// A url_file that is not one http(s) URL stops the sink at start, without
// quoting what the file holds (its mode is judged with every secret file's
// at start: TestCheckNamedFiles); url and url_file go alone, and only on
// http sinks and the anchor.
func TestURLFileRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content string
		mode    os.FileMode
		want    string
	}{
		{"https://c.example/in/s3cretpath\nhttps://other.example/", 0o600, "one URL on one line"},
		{"ftp://c.example/s3cretpath", 0o600, "does not hold an http(s) URL"},
		{"c.example/s3cretpath", 0o600, "does not hold an http(s) URL"},
		{"", 0o600, "one URL on one line"},
	} {
		f := filepath.Join(dir, fmt.Sprintf("u%d", c.mode))
		os.Remove(f)
		if err := os.WriteFile(f, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f, c.mode)
		_, err := auditsink.NewTarget(auditsink.SinkConfig{Type: "http", URLFile: f})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cretpath") {
			t.Errorf("%q (%o): %v, want %q", c.content, c.mode, err, c.want)
		}
		_, err = auditsink.NewAnchorTarget(auditsink.AnchorConfig{URLFile: f})
		if err == nil || strings.Contains(err.Error(), "s3cretpath") {
			t.Errorf("anchor %q (%o): %v", c.content, c.mode, err)
		}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{auditsink.SinkConfig{Type: "http", URL: "https://c.example/in", URLFile: "/etc/u"}.Validate(), "url or url_file, not both"},
		{auditsink.SinkConfig{Type: "http", URLFile: "etc/u"}.Validate(), "must be an absolute path"},
		{auditsink.SinkConfig{Type: "syslog", Addr: "tcp://siem:514", URLFile: "/etc/u"}.Validate(), "url_file does not apply to a syslog sink"},
		{auditsink.SinkConfig{Type: "file", Path: "/var/log/t", URLFile: "/etc/u"}.Validate(), "url_file does not apply to a file sink"},
		{auditsink.AnchorConfig{File: "/mnt/a", URLFile: "/etc/u"}.Validate(), "one of file, url and url_file"},
		{auditsink.AnchorConfig{URL: "https://a.example/h", URLFile: "/etc/u"}.Validate(), "one of file, url and url_file"},
		{auditsink.AnchorConfig{URLFile: "u"}.Validate(), "must be an absolute path"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%v, want %q", c.err, c.want)
		}
	}
	if a := (auditsink.AnchorConfig{URLFile: "/etc/u"}); !a.Enabled() || a.Name() != "anchor:url_file:/etc/u" || a.ShownURL() != "url_file:/etc/u" {
		t.Errorf("anchor: enabled %v, name %q, shown %q", a.Enabled(), a.Name(), a.ShownURL())
	}
}

// Moving a collector's URL from url to url_file, as docs/audit.md advises,
// keeps the sink's place: the cursor stored under the URL's name is
// adopted (the collector gets only what is new), and that old key, which
// holds the URL, is deleted. The same for the anchor.
func TestMovingToURLFileKeepsTheCursor(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	url := "http://" + coll.addr + "/receiver/v1/http/ZaVnC4dhaV2ZK1p7Z3fU9q0LmXbR"
	tr.add(t, 10, "x")
	m := tr.start(t, []auditsink.SinkConfig{{Type: "http", URL: url}}, auditsink.AnchorConfig{})
	waitFor(t, "10 delivered", func() bool { return m.Status()[0].Cursor.Seq == 10 })
	m.Close()
	before := coll.got.count()

	file := filepath.Join(t.TempDir(), "collector-url")
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.add(t, 1, "y")
	m = tr.start(t, []auditsink.SinkConfig{{Type: "http", URLFile: file}}, auditsink.AnchorConfig{})
	defer m.Close()
	waitFor(t, "11 delivered", func() bool { return m.Status()[0].Cursor.Seq == 11 })
	if again := coll.got.count() - before; again != 1 {
		t.Fatalf("after moving the same URL to url_file the collector got %d events again, want only the 1 new one", again)
	}
	cs, err := tr.db.SinkCursors(context.Background())
	if err != nil || len(cs) != 1 || cs["http:url_file:"+file].Seq != 11 {
		t.Fatalf("stored cursors: %v %+v", err, cs)
	}
}

// A standby replica reports nothing of the stand-ins it saw while it
// led: the leader's deliveries are its own to judge.
func TestStandbyDropsTheRecentStandIns(t *testing.T) {
	tr := newTrail(t, 1000)
	coll := newCollector(t)
	coll.setHandler(refusePoison)
	tr.add(t, auditsink.StandInAlarm, "POISON")
	var leads atomic.Bool
	leads.Store(true)
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db, Sinks: []auditsink.SinkConfig{{Type: "http", URL: coll.url(), BatchMax: 4}},
		CursorKey: cursorKey, Leader: leads.Load, Poll: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitFor(t, "the alarm", func() bool { return m.Status()[0].RecentStandIns == auditsink.StandInAlarm })
	leads.Store(false)
	waitFor(t, "standby", func() bool { return m.Status()[0].Standby })
	if st := m.Status()[0]; st.Problem(time.Now(), time.Hour) != nil {
		t.Fatalf("a standby replica still reports the old run (%d): %v", st.RecentStandIns, st.Problem(time.Now(), time.Hour))
	}
}
