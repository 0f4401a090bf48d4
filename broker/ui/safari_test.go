package ui

import (
	"net/http"
	"testing"
)

// Safari (16.4+, macOS and iOS) sends Sec-Fetch-Site, -Mode and -Dest but
// never Sec-Fetch-User (webkit.org/b/247697): a page a Safari user clicks
// to on this site still counts as a use, so their session does not idle
// out while they read and click pages.
func TestSafariClicksCountAsUse(t *testing.T) {
	e := newEnv(t)
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	e.svc.mu.Lock()
	u0 := e.svc.uses
	e.svc.mu.Unlock()
	req, _ := http.NewRequest("GET", e.base+"/ui/mine", nil)
	// What Safari sends when the person clicks a link on this site.
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	e.svc.mu.Lock()
	u1 := e.svc.uses
	e.svc.mu.Unlock()
	if res.StatusCode != http.StatusOK || u1 == u0 {
		t.Fatalf("a click in Safari (%d) did not count as a use: the session idles out while the person reads pages", res.StatusCode)
	}
}
