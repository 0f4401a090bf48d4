package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// hostSet is the names the proxy answers to (Options.AllowedHosts).
type hostSet struct {
	any      map[string]bool // names allowed on any port, lower case, no brackets
	withPort map[string]bool // "name:port", lower case, IPv6 in brackets
	ips      bool            // every IP-address Host (Options.AllowIPHosts)
}

// newHostSet parses "name" and "name:port" entries ("[::1]" and
// "[::1]:8701" for IPv6).
func newHostSet(names []string, ips bool) (hostSet, error) {
	hs := hostSet{ips: ips}
	var bad []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || strings.ContainsAny(n, "/ @") {
			bad = append(bad, fmt.Sprintf("%q", n))
			continue
		}
		if h, port, err := net.SplitHostPort(n); err == nil {
			if h == "" || port == "" {
				bad = append(bad, fmt.Sprintf("%q", n))
				continue
			}
			if hs.withPort == nil {
				hs.withPort = map[string]bool{}
			}
			hs.withPort[net.JoinHostPort(h, port)] = true
			continue
		}
		if hs.any == nil {
			hs.any = map[string]bool{}
		}
		hs.any[strings.TrimSuffix(strings.TrimPrefix(n, "["), "]")] = true
	}
	if len(bad) > 0 {
		return hostSet{}, fmt.Errorf("allowed hosts %s are not host names (want name or name:port)", strings.Join(bad, ", "))
	}
	return hs, nil
}

// CheckHostnames judges configured Host names as the proxy reads them
// (proxy.hostnames; config validation applies it to the other
// listeners' names too): each "name" or "name:port", not empty, without
// '/', '@' or a space. The error names each entry that is not one.
func CheckHostnames(names []string) error {
	_, err := newHostSet(names, false)
	return err
}

func (hs hostSet) empty() bool { return !hs.ips && len(hs.any) == 0 && len(hs.withPort) == 0 }

// allows reports whether a Host header names the proxy.
func (hs hostSet) allows(host string) bool {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return false // "localhost:8701.evil.com" is not localhost
		}
		return hs.any[h] || hs.withPort[net.JoinHostPort(h, port)] || (hs.ips && net.ParseIP(h) != nil)
	}
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return hs.any[h] || (hs.ips && net.ParseIP(h) != nil)
}

// checkHost refuses calls whose Host header is not one of the proxy's
// names. A loopback listener is no trust boundary: a web page whose
// hostname an attacker rebinds to 127.0.0.1 (or to an internal address)
// reaches it from the browser, but its requests still carry the attacker's
// hostname. An IP-address Host cannot be rebound, so AllowIPHosts is safe.
func (p *Proxy) checkHost(w http.ResponseWriter, r *http.Request) bool {
	if p.hosts.empty() || p.hosts.allows(r.Host) {
		return true
	}
	c := callFrom(r.Context())
	w.Header().Set("Connection", "close")
	p.fail(w, c, hostRefusal(r.Host))
	return false
}

// hostRefusal is the answer to a Host the proxy does not answer to.
func hostRefusal(host string) *apiError {
	return &apiError{Status: http.StatusMisdirectedRequest, Type: "invalid_request_error", Code: CodeHostNotAllowed, NoRetry: true,
		Message: fmt.Sprintf("This pamctl proxy does not answer to host %q. Use its configured address as the base URL; "+
			"an administrator can add the name to proxy.hostnames.", clip(host, capShort))}
}

// HostCheck serves h to requests whose Host names the proxy as a call's
// is checked (Options.AllowedHosts and AllowIPHosts: allowed, ips);
// others get the same 421 host_not_allowed, and are not calls (no audit
// event). For what serve mounts beside the proxy on its listener,
// /healthz and /readyz, which a web page rebound to the proxy's address
// must not read either; a request without a Host (an HTTP/1.0 health
// check: HAProxy's httpchk default; no browser sends one) is served. It
// fails on an entry that is not a host name.
func HostCheck(allowed []string, ips bool, h http.Handler) (http.Handler, error) {
	hs, err := newHostSet(allowed, ips)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hs.empty() && !hs.allows(r.Host) && r.Host != "" {
			w.Header().Set("Connection", "close")
			hostRefusal(r.Host).write(w)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}
