package ui

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Only what the person does keeps the web session alive: the live
// queue's event stream, the refreshes app.js fetches, a prefetch, a frame
// and a navigation another site started without the person's click are
// checked without counting as a use; a page the person opens (a click,
// the address bar, a link from a native app), a form they send and a
// client without fetch metadata count. Safari sends no Sec-Fetch-User
// (webkit.org/b/247697), so a top-level navigation on this site counts
// without it: nothing on the page navigates by itself (app.js does not
// reload; TestPageScriptNeverNavigatesByItself).
func TestOnlyUserDrivenRequestsKeepTheSessionAlive(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	_, page := get(t, c, e.base+"/ui/requests/req_held")
	csrf := csrfIn(t, page)
	do := func(method, path string, hdr map[string]string, form url.Values) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(ctx, method, e.base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if path == "/ui/events" {
			buf := make([]byte, 64)
			res.Body.Read(buf) // the stream opened (retry: line)
		}
		cancel()
		res.Body.Close()
		return res.StatusCode
	}
	counts := func() (uses, checks int) {
		e.svc.mu.Lock()
		defer e.svc.mu.Unlock()
		return e.svc.uses, e.svc.checks
	}
	nav := map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		form               url.Values
		use                bool
	}{
		{"the event stream", "GET", "/ui/events", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, nil, false},
		{"app.js refreshing the queue", "GET", "/ui/", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Accept": "text/html"}, nil, false},
		{"app.js refreshing in a browser without fetch metadata", "GET", "/ui/", map[string]string{"X-Pamctl-Refresh": "1", "Accept": "text/html"}, nil, false},
		{"a fetch with a forged Sec-Fetch-User", "GET", "/ui/", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "same-origin", "Sec-Fetch-User": "?1"}, nil, false},
		{"a click in Safari (no Sec-Fetch-User)", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, nil, true},
		{"Safari: the address bar or a link from a native app", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, nil, true},
		{"another site's script navigating here", "GET", "/ui/", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, nil, false},
		{"a sibling subdomain's script navigating here", "GET", "/ui/", map[string]string{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, nil, false},
		{"a frame, even clicked", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe", "Sec-Fetch-User": "?1"}, nil, false},
		{"a Safari prefetch", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Purpose": "prefetch"}, nil, false},
		{"a prefetch", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1", "Sec-Purpose": "prefetch"}, nil, false},
		{"a legacy prefetch", "GET", "/ui/mine", map[string]string{"Purpose": "prefetch"}, nil, false},
		{"an image or iframe load", "GET", "/ui/mine", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, nil, false},
		{"a page the person opened", "GET", "/ui/mine", nav, nil, true},
		{"a link from elsewhere the person clicked", "GET", "/ui/requests/req_held", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}, nil, true},
		{"a form the person sent", "POST", "/ui/requests/req_held/decide", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1", "Origin": "null"},
			url.Values{"csrf": {csrf}, "decision": {"deny"}}, true},
		{"a client without fetch metadata", "GET", "/ui/mine", nil, nil, true},
	} {
		u0, c0 := counts()
		if st := do(tc.method, tc.path, tc.hdr, tc.form); st >= 400 {
			t.Fatalf("%s: %d", tc.name, st)
		}
		u1, c1 := counts()
		switch {
		case tc.use && u1 == u0:
			t.Errorf("%s did not count as a use", tc.name)
		case !tc.use && u1 != u0:
			t.Errorf("%s counted as a use (%d): it keeps an idle session alive", tc.name, u1-u0)
		case !tc.use && c1 == c0:
			t.Errorf("%s: the session was not checked", tc.name)
		}
	}
}
