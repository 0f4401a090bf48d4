package auditsink_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// A collector (or a proxy in front of it) that echoes what it was sent in
// its error answer does not put the sink's credentials in pamctl's errors,
// its log or `pamctl audit sinks`: the URL's query, a token in its path
// (black-box red team), its user info (and the
// Basic header Go builds from it), and the headers_file values, whole or
// word by word, are redacted from the answer before it is cut and shown.
// The same holds for the anchor URL.
func TestCollectorAnswerNeverEchoesCredentials(t *testing.T) {
	const (
		query  = "QuerySecret0001"
		user   = "sinkuser01"
		pass   = "PassSecret0002"
		header = "HeaderSecret0003"
		anchor = "AnchorSecret0004"
		path   = "PathSecret0005Zx9kQ2mP7vL4"
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	echo := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusUnauthorized)
		// Secrets first, so a cut at 200 characters would not hide them.
		io.WriteString(w, "denied: path="+r.URL.Path+" query="+r.URL.RawQuery+" authorization="+r.Header.Get("Authorization")+
			" bare="+strings.TrimPrefix(r.Header.Get("Authorization"), "Splunk ")+" "+strings.Repeat("x", 300))
	}
	srv := httptest.NewServer(http.HandlerFunc(echo))
	defer srv.Close()

	dir := t.TempDir()
	hdrs := filepath.Join(dir, "h")
	os.WriteFile(hdrs, []byte("Authorization: Splunk "+header+"\n"), 0o600)
	ahdrs := filepath.Join(dir, "a")
	os.WriteFile(ahdrs, []byte("Authorization: Splunk "+anchor+"\n"), 0o600)
	withUser := strings.Replace(srv.URL, "http://", "http://"+user+":"+pass+"@", 1)

	tr := newTrail(t, 1)
	var logs logtest.Buffer
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db,
		Sinks: []auditsink.SinkConfig{
			{Name: "query", Type: "http", URL: srv.URL + "/ingest?token=" + query},
			{Name: "userinfo", Type: "http", URL: withUser + "/ingest"},
			{Name: "headers", Type: "http", URL: srv.URL + "/hec", Format: "splunk_hec", HeadersFile: hdrs},
			{Name: "path", Type: "http", URL: srv.URL + "/receiver/v1/http/" + path},
		},
		Anchor: auditsink.AnchorConfig{URL: srv.URL + "/anchor", HeadersFile: ahdrs},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Poll:   50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tr.add(t, 2, "x")
	waitFor(t, "every sink and the anchor failing with 401", func() bool {
		n := 0
		for _, s := range m.Status() {
			if strings.Contains(s.LastError, "401") {
				n++
			}
		}
		return n == 5
	})
	for _, s := range m.Status() {
		if !strings.Contains(s.LastError, "[redacted]") {
			t.Errorf("%s: the echo was not redacted, or the excerpt is gone: %s", s.Name, s.LastError)
		}
		for _, secret := range []string{query, pass, basic, header, anchor, path} {
			if strings.Contains(s.LastError, secret) {
				t.Errorf("%s: last error holds a credential: %s", s.Name, s.LastError)
			}
		}
	}
	m.Close()
	for _, secret := range []string{query, pass, basic, header, anchor, path} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds credential %s:\n%s", secret, logs.String())
		}
	}
}

// A sink or anchor refused at start never prints the credentials its
// address carries (config check and serve print the error).
func TestRefusedDestinationsNeverEchoCredentials(t *testing.T) {
	for _, c := range []auditsink.SinkConfig{
		{Type: "syslog", Addr: "tcp+tls://user:S3cretPass@siem:6514"},
		{Type: "syslog", Addr: "tcp://siem:514?token=S3cretPass"},
		{Type: "syslog", Addr: "smtp://user:S3cretPass@siem:514"},
		{Type: "http", URL: "ftp://user:S3cretPass@collector/ingest?token=S3cretPass"},
		{Type: "http", URL: "https://collector/%zz?token=S3cretPass"},
	} {
		err := c.Validate()
		if err == nil {
			t.Errorf("%+v: accepted", c)
			continue
		}
		if strings.Contains(err.Error(), "S3cretPass") {
			t.Errorf("the error shows the credential: %v", err)
		}
	}
	if err := (auditsink.AnchorConfig{URL: "ftp://u:S3cretPass@x/y"}).Validate(); err == nil || strings.Contains(err.Error(), "S3cretPass") {
		t.Errorf("anchor: %v", err)
	}
}

// A hostile collector that answers with garbage instead of HTTP (a status
// line of hundreds of kilobytes) cannot make the sink's error, which
// reaches the log, `pamctl audit sinks` and /readyz's log lines, that
// large; nor can any other cause (a certificate listing thousands of
// names): every delivery error is escaped and at most 1 KiB.
func TestGarbageAnswerMakesAShortSinkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("HTTP/1.1 2\x1b[2K" + strings.Repeat("Z", 512<<10) + "\r\n\r\n"))
			}()
		}
	}()
	tr := newTrail(t, 1000)
	var logs logtest.Buffer
	var mu sync.Mutex
	var reported []string
	m, err := auditsink.Start(context.Background(), auditsink.Options{Source: tr.log, Cursors: tr.db,
		Sinks:   []auditsink.SinkConfig{{Type: "http", URL: "http://" + ln.Addr().String() + "/ingest"}},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		OnError: func(_ string, err error) { mu.Lock(); reported = append(reported, err.Error()); mu.Unlock() },
		Poll:    50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tr.add(t, 1, "x")
	waitFor(t, "the delivery failing", func() bool { return m.Status()[0].LastError != "" })
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, msg := range append(reported, m.Status()[0].LastError) {
		if len(msg) > 1100 || strings.ContainsAny(msg, "\x1b\n\r") {
			t.Errorf("sink error of %d bytes: %.300q", len(msg), msg)
		}
	}
	if n := len(logs.String()); n > 8<<10 {
		t.Errorf("%d bytes of log for one failing sink", n)
	}
}
