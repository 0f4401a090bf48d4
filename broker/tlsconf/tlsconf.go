// Package tlsconf holds pamctl's TLS settings: the server side of a
// listener (certificate and key, optional client CA for mTLS, reloaded when
// the files change), the check that refuses plaintext off loopback, the
// client side trust (system roots plus an optional CA file) and throwaway
// development certificates. The CLI, the broker's client code and the
// listeners of `pamctl serve` share it.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
)

// MinVersion is the lowest TLS version pamctl speaks, as server and client.
// Cipher suites are Go's defaults (modern AEAD suites only for TLS 1.2).
const MinVersion = tls.VersionTLS12

// Config is the tls: section of a listener.
type Config struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ClientCAFile, when set, turns on mTLS: clients must present a
	// certificate signed by one of these CAs.
	ClientCAFile string `mapstructure:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.ClientCAFile != "" }

// Validate checks the settings' shape (not the files: Load does). name is
// the config key of the section, e.g. "broker.tls".
func (c Config) Validate(name string) error {
	var errs []error
	switch {
	case c.CertFile == "" && c.KeyFile == "" && c.ClientCAFile != "":
		errs = append(errs, fmt.Errorf("%s: client_ca_file needs cert_file and key_file (mTLS runs over TLS)", name))
	case c.CertFile == "" && c.KeyFile != "":
		errs = append(errs, fmt.Errorf("%s: key_file is set but cert_file is not: set both", name))
	case c.CertFile != "" && c.KeyFile == "":
		errs = append(errs, fmt.Errorf("%s: cert_file is set but key_file is not: set both", name))
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a listen address only accepts connections
// from this machine: a loopback IP or "localhost". An empty host (":8700")
// or an unspecified one (0.0.0.0, ::) listens everywhere; any other name
// may resolve anywhere, so both count as not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListener refuses plaintext on an address other machines can reach.
// name is the listener's config section ("broker", "proxy"). It returns a
// warning to log when plaintext is allowed off loopback by
// insecure_plaintext (a TLS-terminating load balancer in front).
func CheckListener(name, addr string, c Config, insecurePlaintext bool) (warning string, err error) {
	if c.Enabled() || IsLoopback(addr) {
		return "", nil
	}
	if insecurePlaintext {
		return fmt.Sprintf("%s listens on %s without TLS (%s.insecure_plaintext: true): only safe behind a TLS-terminating load balancer on a private network", name, addr, name), nil
	}
	return "", fmt.Errorf("%s: %s is not a loopback address and %s.tls is not configured; refusing to serve plaintext there. "+
		"Set %s.tls.cert_file and %s.tls.key_file, listen on 127.0.0.1, or set %s.insecure_plaintext: true if a TLS-terminating load balancer sits in front",
		name, addr, name, name, name, name)
}

// RootCAs is the system roots plus the certificates of caFile (none when
// caFile is ""). A CA file that cannot be read or holds no certificate is
// an error naming it.
func RootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	if err := appendPEMFile(pool, caFile); err != nil {
		return nil, err
	}
	return pool, nil
}

func appendPEMFile(pool *x509.CertPool, file string) error {
	raw, err := safefile.ReadFile(file)
	if err != nil {
		return fmt.Errorf("CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(raw) {
		return fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return nil
}

// ClientConfig is the TLS configuration of a client that trusts the
// system roots and caFile.
func ClientConfig(caFile string) (*tls.Config, error) {
	roots, err := RootCAs(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: MinVersion, RootCAs: roots}, nil
}

// Transport is an HTTP transport (http.DefaultTransport's settings) that
// verifies servers against the system roots and caFile.
func Transport(caFile string) (*http.Transport, error) {
	return ClientTransport(ClientFiles{CAFile: caFile})
}

// ClientTransport is an HTTP transport with NewClientConfig(f): the
// system roots plus f.CAFile, and f's client certificate when set.
func ClientTransport(f ClientFiles) (*http.Transport, error) {
	tc, err := NewClientConfig(f)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ForceAttemptHTTP2 = true
	return tr, nil
}

// HTTPClient is an http.Client with Transport(caFile) and timeout.
func HTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr, err := Transport(caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// IsClientCertificateRefused reports whether err is a server's TLS alert
// refusing the client's certificate, or its lack of one (mTLS): the case
// a client certificate setting fixes.
func IsClientCertificateRefused(err error) bool {
	var oe *net.OpError
	for e := err; errors.As(e, &oe); e = oe.Err {
		if oe.Op != "remote error" || oe.Err == nil {
			continue
		}
		switch oe.Err.Error() {
		case "tls: certificate required", "tls: bad certificate", "tls: unknown certificate authority",
			"tls: expired certificate", "tls: revoked certificate", "tls: unsupported certificate", "tls: unknown certificate":
			return true
		}
		return false
	}
	return false
}

// IsUnknownAuthority reports whether err is a failure to verify a
// server's certificate chain, the case --ca-file fixes.
func IsUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &cv)
}
