package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrPlaintextServer is returned for a broker URL that would carry ID
// tokens and sessions in clear: http:// to anything but loopback.
var ErrPlaintextServer = errors.New("plain http:// to a non-loopback broker")

// CheckServer refuses a broker URL over which credentials would cross a
// network in clear: http:// is accepted only when the host is loopback
// (localhost, 127.0.0.0/8, ::1); anything else must be https://.
func CheckServer(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server %q is not an http(s) URL", raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("server %s: %w: use https://%s; pamctl sends ID tokens and sessions to the broker, and http:// is accepted only for localhost, 127.0.0.0/8 and ::1",
			raw, ErrPlaintextServer, u.Host)
	}
	return fmt.Errorf("server %q is not an http(s) URL", raw)
}

// IsLoopbackHost reports whether host (no port) is the name localhost or a
// loopback IP literal. Other names are not resolved: what a name points to
// can change after the check.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	// An IPv6 zone (fe80::1%eth0) is not loopback; ParseIP refuses it.
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckRedirect is an http.Client CheckRedirect for calls that carry
// credentials (a session header, an ID token in the body): it follows a
// redirect only within the same scheme and host, so neither a downgrade to
// http:// nor another host ever receives them.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	from := via[0].URL
	if !strings.EqualFold(req.URL.Scheme, from.Scheme) || !strings.EqualFold(req.URL.Host, from.Host) {
		return fmt.Errorf("the broker at %s://%s redirected to %s://%s: pamctl does not follow a redirect to another scheme or host with credentials; set server to the broker's own https:// URL",
			from.Scheme, from.Host, req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// guarded returns a copy of hc that follows only same-origin redirects
// (on top of hc's own CheckRedirect, if any).
func guarded(hc *http.Client) *http.Client {
	c := *hc
	own := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := CheckRedirect(req, via); err != nil {
			return err
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	return &c
}
