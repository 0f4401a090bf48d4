package oidc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// OpenBrowser opens rawURL in the user's browser ($BROWSER if set, else
// xdg-open, open or rundll32 by platform) without waiting for it. Only http
// and https URLs are opened, so a hostile discovery document cannot make it
// run a file: or custom-scheme handler.
func OpenBrowser(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("oidc: refusing to open %q in a browser: not an http(s) URL", truncate(rawURL, 80))
	}
	name, args := browserCommand(runtime.GOOS, os.Getenv("BROWSER"), u.String())
	if name == "" {
		return fmt.Errorf("oidc: no known way to open a browser on %s; open the URL yourself", runtime.GOOS)
	}
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("oidc: open browser: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reap the launcher; its exit status says nothing useful
	return nil
}

// browserCommand picks the launcher for goos. browserEnv is $BROWSER, whose
// first entry (colon-separated, as in the sensible-browser convention) wins.
func browserCommand(goos, browserEnv, rawURL string) (string, []string) {
	if b, _, _ := strings.Cut(browserEnv, ":"); strings.TrimSpace(b) != "" {
		return strings.TrimSpace(b), []string{rawURL}
	}
	switch goos {
	case "darwin":
		return "open", []string{rawURL}
	case "windows":
		return "rundll32", []string{"url.dll,FileProtocolHandler", rawURL}
	case "linux", "freebsd", "openbsd", "netbsd", "dragonfly", "illumos", "solaris":
		return "xdg-open", []string{rawURL}
	default:
		return "", nil
	}
}

// FollowRedirects returns an opener for CodeFlow that GETs the login URL with
// client and follows its redirects, all the way to the loopback listener. With
// the dev issuer, whose /authorize auto-consents, this completes a login with
// no browser (`pamctl login --user alice --groups ml`). nil client means one
// with a 30 s timeout. The opener fails if the final page is not a 2xx.
func FollowRedirects(client *http.Client) func(url string) error {
	c := &http.Client{Timeout: 30 * time.Second}
	if client != nil {
		cp := *client
		cp.CheckRedirect = nil // the default: follow up to 10 redirects
		c = &cp
	}
	return func(rawURL string) error {
		resp, err := c.Get(rawURL)
		if err != nil {
			// *url.Error quotes the URL, query (code, state) included.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = fmt.Errorf("%s %s: %w", ue.Op, withoutQuery(ue.URL), ue.Err)
			}
			return fmt.Errorf("oidc: follow login redirects: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("oidc: follow login redirects: %s answered %s: %s",
				withoutQuery(resp.Request.URL.String()), resp.Status, sanitize(strings.TrimSpace(string(body)), 200))
		}
		return nil
	}
}

// withoutQuery drops the query and fragment of a URL, which may hold an
// authorization code or state, before it goes into an error message.
func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}
