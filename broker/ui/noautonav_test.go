package ui

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// Nothing on the UI's pages navigates by itself: a top-level navigation
// on this site counts as the person's use of the session (Safari sends no
// Sec-Fetch-User to tell a click from a script), so a script or a meta
// refresh that loaded a page would keep an unattended tab's session alive
// (and, with sessions.idle_timeout under approvals.reauth_after, renew it
// with nobody at the keyboard). app.js, as served, has no reload,
// location assignment, window.open, form submit or history move, and does
// not follow redirects when it refreshes the queue (a redirect to the
// login would start one); no template has a meta refresh. (A check of the
// script's source; cli.TestBrowserQueueSaysTheSessionEnded runs it in
// Chromium.)
func TestPageScriptNeverNavigatesByItself(t *testing.T) {
	e := newEnv(t)
	res, js := get(t, browser(t), e.base+"/ui/static/app.js")
	if res.StatusCode != http.StatusOK || !strings.Contains(js, "EventSource") {
		t.Fatalf("GET /ui/static/app.js: %d\n%.300s", res.StatusCode, js)
	}
	// Comments may name what the script does not do.
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(js, "")
	for name, re := range map[string]*regexp.Regexp{
		"a reload, assign or replace":          regexp.MustCompile(`location\s*\.\s*(reload|assign|replace)\b`),
		"an assignment to location":            regexp.MustCompile(`location(\s*\.\s*href)?\s*=[^=]`),
		"an assignment to document.location":   regexp.MustCompile(`document\s*\.\s*(URL|location)\s*=[^=]`),
		"window.open":                          regexp.MustCompile(`\bopen\s*\(`),
		"a form submit":                        regexp.MustCompile(`\.\s*(submit|requestSubmit)\s*\(`),
		"a scripted click":                     regexp.MustCompile(`\.\s*click\s*\(`),
		"a history move":                       regexp.MustCompile(`history\s*\.\s*(go|back|forward)\b`),
		"a meta refresh written by the script": regexp.MustCompile(`(?i)http-equiv`),
	} {
		if m := re.FindString(code); m != "" {
			t.Errorf("app.js navigates by itself: %s (%q)", name, m)
		}
	}
	if !regexp.MustCompile(`fetch\([^)]*redirect:\s*"manual"`).MatchString(code) {
		t.Error(`app.js's refresh follows redirects (want fetch(..., {redirect: "manual"})): a redirect to the login would start one behind the person's back`)
	}
	if !strings.Contains(code, `"`+refreshHeader+`": "1"`) {
		t.Error("app.js's refresh is not marked " + refreshHeader + ": from a browser without fetch metadata it would count as the person's use")
	}
	if !strings.Contains(code, `addEventListener("logout"`) || !strings.Contains(code, "session has ended") {
		t.Error("app.js does not tell the person their session has ended (the logout event)")
	}
	err := fs.WalkDir(templateFS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templateFS, path)
		if err == nil && regexp.MustCompile(`(?i)http-equiv\s*=\s*"?refresh`).Match(b) {
			t.Errorf("%s has a meta refresh: the page would reload itself", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
