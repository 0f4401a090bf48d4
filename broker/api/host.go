package api

import (
	"net"
	"net/http"
	"strconv"
	"strings"
)

// HostCheck refuses requests whose Host header is not a name the broker is
// known by, so that a web page cannot drive the broker (or the embedded dev
// issuer) through DNS rebinding: a page on attacker.example whose name is
// made to resolve to 127.0.0.1 reaches a loopback listener with the
// browser's blessing, but its requests carry Host: attacker.example.
//
// Accepted: IP literals (a page can only be served from an IP literal by
// that address itself), "localhost", and the hostnames given (broker.hostnames
// in the config, and the host of `server:`), compared case-insensitively and
// ignoring the port. Anything else gets 421 Misdirected Request.
//
// Every path is checked, the probes (/healthz, /readyz) included: a probe
// by IP address (the kubelet's, a load balancer's) or by localhost passes,
// and so does one without a Host (ProbeWithoutHost).
func HostCheck(hostnames []string, h http.Handler) http.Handler {
	return HostCheckFor("broker", "broker.hostnames", hostnames, ProbeWithoutHost, h)
}

// ProbeWithoutHost reports whether r is a request to a probe (/healthz,
// /readyz) that carries no Host: an HTTP/1.0 health check (HAProxy's
// httpchk default, a load balancer's monitor, nc). A browser always sends
// a Host, so a page rebound to the listener cannot send this.
func ProbeWithoutHost(r *http.Request) bool {
	return r.Host == "" && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
}

// AnyWithoutHost is HostCheckFor's noHost for a listener whose every path
// may be read without a Host (the metrics listener: probes and scrapes).
func AnyWithoutHost(r *http.Request) bool { return r.Host == "" }

// HostCheckFor is HostCheck for another listener: what names it in the
// refusal ("metrics listener"), setting the setting its names are added
// to, and noHost which requests without a Host it serves.
func HostCheckFor(what, setting string, hostnames []string, noHost func(*http.Request) bool, h http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true}
	for _, n := range hostnames {
		if n = normalizeHost(n); n != "" {
			allowed[n] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(allowed, r.Host) && !noHost(r) {
			var body ErrorBody
			body.Error.Code = "misdirected"
			body.Error.Message = "this " + what + " does not answer to the host name " + quoteHost(r.Host) +
				"; reach it by a configured name, or add the name to " + setting + " in the config"
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusMisdirectedRequest, body)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func hostAllowed(allowed map[string]bool, host string) bool {
	if _, port, err := net.SplitHostPort(host); err == nil && !validPort(port) {
		return false // "localhost:8700.evil.com" is not localhost
	}
	name := normalizeHost(host)
	if name == "" {
		return false
	}
	if net.ParseIP(name) != nil {
		return true
	}
	return allowed[name]
}

// validPort reports whether p is a decimal port number.
func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0 && len(p) <= 5
}

// normalizeHost returns the host name of a Host header or a configured
// name: no port, no brackets, lower case, no trailing dot.
func normalizeHost(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100]
	}
	return "\"" + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' {
			return '?'
		}
		return r
	}, h) + "\""
}
