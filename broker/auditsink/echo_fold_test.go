package auditsink_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// percentDecode decodes every %XX of s (either case), leaving the rest.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// A collector that echoes the URL it was sent in another case, percent-
// encoded or decoded (a proxy normalising the path, an error page quoting
// it) still never puts a url_file's path segment, a token in a url's path
// or a query value in the sink's last_error (black-box red team: the
// upper-cased path escaped the redaction, which matched it byte for
// byte). The error stays bounded and escaped.
func TestCollectorEchoInAnyCaseOrEncodingIsRedacted(t *testing.T) {
	const (
		fileSeg  = "acme-prod"                   // a url_file's segment: secret though no token
		fileTok  = "ZaVnC4dh!aV2 ZK1p7Z3fU9q0Lm" // decoded; sent as ZaVnC4dh%21aV2%20ZK1p7Z3fU9q0Lm
		pathTok  = "PathTok3n0005Zx9kQ2mP7vL4"   // a token in an inline url's path
		queryVal = "Query Secret/0001+é"         // a query value, sent encoded
	)
	secrets := []string{fileSeg, fileTok, pathTok, queryVal}
	for _, v := range []struct {
		name string
		f    func(r *http.Request) string // what the collector echoes
	}{
		{"as sent", func(r *http.Request) string { return r.URL.EscapedPath() + "?" + r.URL.RawQuery }},
		{"decoded", func(r *http.Request) string {
			return r.URL.Path + "?" + r.URL.Query().Encode() + " " + r.URL.Query().Get("src")
		}},
		{"upper-cased", func(r *http.Request) string {
			return strings.ToUpper(r.URL.Path + "?" + r.URL.RawQuery + " " + r.URL.Query().Get("src"))
		}},
		{"lower-cased", func(r *http.Request) string {
			return strings.ToLower(r.URL.Path + "?" + r.URL.RawQuery + " " + r.URL.Query().Get("src"))
		}},
		{"query-escaped", func(r *http.Request) string {
			return url.QueryEscape(r.URL.Path) + " " + url.QueryEscape(r.URL.Query().Get("src"))
		}},
		{"path-escaped", func(r *http.Request) string {
			return url.PathEscape(r.URL.Path) + " " + url.PathEscape(r.URL.Query().Get("src"))
		}},
		{"upper-cased escaped", func(r *http.Request) string {
			return strings.ToUpper(url.QueryEscape(r.URL.Path) + " " + url.QueryEscape(r.URL.Query().Get("src")))
		}},
		{"every byte encoded, lower hex", func(r *http.Request) string {
			var b strings.Builder
			for _, c := range []byte(r.URL.Path + "?src=" + r.URL.Query().Get("src")) {
				fmt.Fprintf(&b, "%%%02x", c)
			}
			return b.String()
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, "denied: "+v.f(r)+" "+strings.Repeat("x", 300))
			}))
			defer srv.Close()
			file := filepath.Join(t.TempDir(), "collector-url")
			if err := os.WriteFile(file, []byte(srv.URL+"/receiver/v1/"+fileSeg+"/"+url.PathEscape(fileTok)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tr := newTrail(t, 1)
			m := tr.start(t, []auditsink.SinkConfig{
				{Name: "file", Type: "http", URLFile: file},
				{Name: "inline", Type: "http", URL: srv.URL + "/receiver/v1/http/" + pathTok + "?src=" + url.QueryEscape(queryVal)},
			}, auditsink.AnchorConfig{URLFile: file})
			tr.add(t, 2, "x")
			waitFor(t, "both sinks and the anchor failing with 401", func() bool {
				n := 0
				for _, s := range m.Status() {
					if strings.Contains(s.LastError, "401") {
						n++
					}
				}
				return n == 3
			})
			time.Sleep(50 * time.Millisecond)
			for _, s := range m.Status() {
				e := s.LastError
				if !strings.Contains(e, "[redacted]") || len(e) > 1100 || strings.ContainsAny(e, "\n\r\x1b") {
					t.Errorf("%s: not redacted, or unbounded or unescaped: %s", s.Name, e)
				}
				// Undo the error's quoting, then every encoding and case.
				shown := strings.ToLower(percentDecode(strings.ReplaceAll(e, `\"`, `"`)))
				shown = strings.ReplaceAll(shown, "+", " ") + " " + shown
				for _, secret := range secrets {
					if strings.Contains(shown, strings.ToLower(secret)) {
						t.Errorf("%s: last_error holds %q in some form: %s", s.Name, secret, e)
					}
				}
			}
		})
	}
}

// A collector can echo in its status line's reason phrase too ("HTTP/1.1
// 401 no receiver at /receiver/v1/acme-prod/…"): it is redacted like the
// body (review B: resp.Status went into last_error as it came).
func TestCollectorStatusLineEchoIsRedacted(t *testing.T) {
	const fileSeg, fileTok = "acme-prod", "StatusTok3n0007Zx9kQ2mP7vL4"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 401 no receiver at %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", strings.ToUpper(r.URL.Path))
		buf.Flush()
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "collector-url")
	if err := os.WriteFile(file, []byte(srv.URL+"/receiver/v1/"+fileSeg+"/"+fileTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := newTrail(t, 1)
	m := tr.start(t, []auditsink.SinkConfig{{Name: "file", Type: "http", URLFile: file}}, auditsink.AnchorConfig{})
	tr.add(t, 1, "x")
	waitFor(t, "the sink failing with 401", func() bool { return strings.Contains(m.Status()[0].LastError, "401") })
	e := strings.ToLower(m.Status()[0].LastError)
	for _, secret := range []string{fileSeg, fileTok} {
		if strings.Contains(e, strings.ToLower(secret)) {
			t.Errorf("last_error holds %q from the status line: %s", secret, m.Status()[0].LastError)
		}
	}
}
