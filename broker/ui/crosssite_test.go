package ui

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// A page elsewhere cannot make the person's browser read the audit trail
// (and write audit.read in their name) by linking or redirecting to
// /ui/audit or a timeline: such a GET gets a page that reads nothing and
// links to the same view, so the read happens on the person's click on
// this site. Their own navigation (this site, the address bar, a
// bookmark, a browser without fetch metadata and no foreign Referer)
// reads as before.
func TestCrossSiteGetsDoNotReadTheAudit(t *testing.T) {
	e := newEnv(t)
	e.audit.Append(context.Background(), &audit.Event{Type: audit.TypeRequestCreated, Actor: &audit.Actor{Subject: "alice"}, Request: "req_access", Reasons: []string{"quarterly report"}})
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	reads := func() int {
		n := 0
		e.audit.Range(context.Background(), 0, func(ev audit.Event) bool {
			if ev.Type == audit.TypeAuditRead {
				n++
			}
			return true
		})
		return n
	}
	open := func(path string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := res.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return res.StatusCode, b.String()
	}
	nav := func(site string, extra ...string) map[string]string {
		h := map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
		if site != "" {
			h["Sec-Fetch-Site"] = site
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	for _, path := range []string{"/ui/audit?type=request.*&actor=alice", "/ui/audit/grants/req_access"} {
		for name, hdr := range map[string]map[string]string{
			"cross-site":                         nav("cross-site"),
			"a sibling subdomain (same-site)":    nav("same-site"),
			"a foreign Referer, no metadata":     {"Referer": "https://evil.example/page"},
			"a foreign Origin, no metadata":      {"Origin": "https://evil.example"},
			"an unreadable Referer, no metadata": {"Referer": "::not a url"},
		} {
			before := reads()
			st, body := open(path, hdr)
			if st != http.StatusForbidden || strings.Contains(body, "quarterly report") || !strings.Contains(body, `id="confirm"`) {
				t.Errorf("%s GET %s: %d, the page reads the trail or has no link to confirm:\n%.600s", name, path, st, body)
			}
			if want := `href="` + strings.ReplaceAll(path, "&", "&amp;") + `"`; !strings.Contains(body, want) {
				t.Errorf("%s GET %s: the page does not link back to the view (%s)", name, path, want)
			}
			if n := reads(); n != before {
				t.Errorf("%s GET %s wrote %d audit.read events in the person's name", name, path, n-before)
			}
		}
		for name, hdr := range map[string]map[string]string{
			"this site (the confirm link)":  nav("same-origin"),
			"the address bar or a bookmark": nav("none"),
			"no metadata, no Referer":       nil,
			"no metadata, our own Referer":  {"Referer": e.base + "/ui/"},
		} {
			before := reads()
			st, body := open(path, hdr)
			if st != http.StatusOK || !strings.Contains(body, "request.created") {
				t.Errorf("%s GET %s: %d, the view is not shown:\n%.600s", name, path, st, body)
			}
			if reads() != before+1 {
				t.Errorf("%s GET %s: the read is not audited once", name, path)
			}
		}
	}
}
