package ui

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrPlainLoopback refuses an http:// public_url unless it is allowed
// (ui.insecure_plaintext, serve --dev): the session cookie of a page on
// plain http can be neither Secure nor __Host-, and browsers send cookies
// to every port of a host, so any other listener on the loopback address
// (another local user's) receives the approvers' sessions when a web page
// sends their browser to it, and decides as them.
var ErrPlainLoopback = errors.New("plain http: browsers send the session cookie to every port of the host, so another local user's listener on it would receive approvers' sessions. Serve the broker over TLS (broker.tls) and use https://, or, on a machine where you are the only user, set ui.insecure_plaintext: true (serve --dev does)")

// PlainHTTP reports whether public_url (already valid) is plain http.
func PlainHTTP(publicURL string) bool {
	u, err := url.Parse(publicURL)
	return err == nil && strings.EqualFold(u.Scheme, "http")
}

// ValidatePublicURL checks ui.public_url: an absolute https URL (http only
// to a loopback address), with a host, and nothing after it but an optional
// "/": no user info, path, query or fragment. Links and the OIDC redirect
// URI are built by appending to it, so anything more would surprise.
func ValidatePublicURL(raw string) error {
	if raw == "" {
		return errors.New("is required when ui.enabled is true, e.g. https://pam.example.com (how people reach the broker)")
	}
	if strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, "\\ \t\r\n") {
		return fmt.Errorf("%q has spaces or backslashes", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: want https://HOST[:PORT]", raw)
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return fmt.Errorf("%q carries user info; drop it", raw)
	case u.Path != "" && u.Path != "/", u.RawPath != "":
		return fmt.Errorf("%q has a path; the UI is served at /ui/ of the broker's own origin: give only scheme://host[:port]", raw)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%q has a query; drop it", raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q has a fragment; drop it", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil || strings.TrimLeft(p, "0123456789") != "" {
			return fmt.Errorf("%q has a bad port", raw)
		}
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return fmt.Errorf("%q is plain http off loopback: session cookies would cross the network in the clear; use https (TLS on the broker or a proxy in front)", raw)
	}
	return nil
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// origin is scheme://host[:port] of a validated public URL.
func origin(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
