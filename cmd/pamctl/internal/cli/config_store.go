package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// validate checks the store: section (every problem at once). Files are
// read at start (EtcdStoreConfig), not here.
func (s StoreConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch s.Backend {
	case BackendBbolt, "":
		return nil
	case BackendEtcd:
	default:
		add("store.backend: %q must be %s (one host, pamctl.db in data_dir) or %s (replicas sharing an etcd cluster)", s.Backend, BackendBbolt, BackendEtcd)
		return errs
	}
	e := s.Etcd
	if len(e.Endpoints) == 0 {
		add("store.etcd.endpoints: list the etcd members' client URLs (e.g. [https://etcd-0.etcd:2379, https://etcd-1.etcd:2379, https://etcd-2.etcd:2379]) with store.backend: etcd")
	}
	for _, ep := range e.Endpoints {
		if err := checkEtcdEndpoint(ep, e.TLS.Enabled()); err != nil {
			errs = append(errs, err)
		}
	}
	if err := etcdstore.ValidatePrefix(e.Prefix); err != nil {
		add("store.etcd.prefix: %v", err)
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		add("store.etcd.tls: cert_file and key_file go together (the client certificate and its key)")
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		add("store.etcd: username and password_file go together (etcd authentication); the password is read from the file, never written in the config")
	}
	return errs
}

// checkEtcdEndpoint refuses an endpoint that is not an http(s) URL, and
// plaintext to anything but loopback: the store carries sessions, grants
// and sealed keys, and etcd credentials would cross the network in clear.
func checkEtcdEndpoint(ep string, tlsSet bool) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return fmt.Errorf("store.etcd.endpoints: %s is not an etcd client URL like https://etcd-0.example.com:2379", shownURL(ep))
	}
	if u.Scheme == "https" {
		return nil
	}
	if tlsSet {
		return fmt.Errorf("store.etcd.endpoints: %s is http:// but store.etcd.tls is set: write https://%s", ep, u.Host)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("store.etcd.endpoints: %s would carry pamctl's state (sessions, grants, sealed keys) and etcd credentials in clear off this host: serve etcd over TLS, write https://%s and configure store.etcd.tls (ca_file, and cert_file and key_file if the cluster wants client certificates)", shownURL(ep), u.Host)
}

// shownURL is raw for an error about it: without its user info, query
// and fragment, which may hold a password or a token (a value in the
// wrong shape reaches the log and, on a reload, the trail).
func shownURL(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?…"
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		scheme := ""
		if j := strings.Index(s[:i], "://"); j >= 0 {
			scheme = s[:j+3]
		}
		s = scheme + "…" + s[i:]
	}
	return strconv.Quote(s)
}

// EtcdStoreConfig turns store.etcd into the store's Config, reading the
// CA, client certificate and password files (through safefile, like every
// other configured file).
func (c *Config) EtcdStoreConfig() (etcdstore.Config, error) {
	e := c.Store.Etcd
	out := etcdstore.Config{Endpoints: e.Endpoints, Prefix: e.Prefix, DialTimeout: e.DialTimeout, Username: e.Username}
	if e.TLS.Enabled() || anyHTTPS(e.Endpoints) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.TLS.CAFile != "" {
			pem, err := safefile.ReadFile(e.TLS.CAFile)
			if err != nil {
				return out, fmt.Errorf("store.etcd.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return out, fmt.Errorf("store.etcd.tls.ca_file: %s holds no PEM certificate", e.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if e.TLS.CertFile != "" {
			certPEM, err := safefile.ReadFile(e.TLS.CertFile)
			if err != nil {
				return out, fmt.Errorf("store.etcd.tls.cert_file: %w", err)
			}
			keyPEM, err := safefile.ReadFile(e.TLS.KeyFile)
			if err != nil {
				return out, fmt.Errorf("store.etcd.tls.key_file: %w", err)
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return out, fmt.Errorf("store.etcd.tls: cert_file and key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		out.TLS = tc
	}
	if e.PasswordFile != "" {
		raw, err := safefile.Read(e.PasswordFile, 4096)
		if err != nil {
			return out, fmt.Errorf("store.etcd.password_file: %w", err)
		}
		pw := strings.TrimRight(string(raw), "\r\n")
		if pw == "" {
			return out, errors.New("store.etcd.password_file: the file is empty")
		}
		out.Password = pw
	}
	return out, nil
}

func anyHTTPS(eps []string) bool {
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") {
			return true
		}
	}
	return false
}

// CheckStore reads store.etcd's files as serve would (the CA, client
// certificate and key, the password), so `pamctl config check` finds a
// missing or malformed one before a replica fails to start.
func (c *Config) CheckStore() error {
	if c.Store.Backend != BackendEtcd || len(c.Store.validate()) > 0 {
		return nil // nothing to read, or Validate already says what is wrong
	}
	_, err := c.EtcdStoreConfig()
	return err
}
