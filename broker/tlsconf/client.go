package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
)

// ClientFiles are a client's trust and, for mTLS, its own certificate.
type ClientFiles struct {
	CAFile   string // trusted besides the system roots; "" for the system roots only
	CertFile string // client certificate (mTLS); with KeyFile
	KeyFile  string
}

// NewClientConfig is the TLS configuration of a client that trusts the
// system roots and CAFile and, when CertFile and KeyFile are set,
// presents that certificate. The pair is re-read at the next handshake
// after either file changes, so a rotated client certificate needs no
// restart; a pair that cannot be loaded then keeps the previous one (and
// the server decides whether it is still good).
func NewClientConfig(f ClientFiles) (*tls.Config, error) {
	tc, err := ClientConfig(f.CAFile)
	if err != nil {
		return nil, err
	}
	if f.CertFile == "" && f.KeyFile == "" {
		return tc, nil
	}
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("tls client: a client certificate needs both its certificate and key file")
	}
	cc := &clientCert{certFile: f.CertFile, keyFile: f.KeyFile}
	if err := cc.load(); err != nil {
		return nil, err
	}
	tc.GetClientCertificate = cc.get
	return tc, nil
}

type clientCert struct {
	certFile, keyFile string

	mu    sync.Mutex
	pair  *tls.Certificate
	stamp [2]fileStamp
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}
}

func (c *clientCert) load() error {
	st := [2]fileStamp{stampOf(c.certFile), stampOf(c.keyFile)}
	pair, err := loadKeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls client certificate %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.pair, c.stamp = &pair, st
	return nil
}

// get offers the certificate to a server that asks for one, unless the
// server names the CAs it accepts and none issued it (an IdP or another
// service that requests certificates from its own CAs): as crypto/tls does
// with Config.Certificates, the client then sends none rather than show
// its identity where it means nothing. A server that names the leaf
// itself (a client_ca_file that pins it) gets it too.
func (c *clientCert) get(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := [2]fileStamp{stampOf(c.certFile), stampOf(c.keyFile)}; st != c.stamp {
		_ = c.load() // a bad pair keeps the one in force
	}
	if cri != nil && cri.SupportsCertificate(c.pair) != nil && !namesLeaf(cri.AcceptableCAs, c.pair) {
		return &tls.Certificate{}, nil
	}
	return c.pair, nil
}

// namesLeaf reports whether names holds the subject of pair's leaf.
func namesLeaf(names [][]byte, pair *tls.Certificate) bool {
	leaf := pair.Leaf
	if leaf == nil && len(pair.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(pair.Certificate[0])
	}
	if leaf == nil {
		return false
	}
	for _, n := range names {
		if bytes.Equal(n, leaf.RawSubject) {
			return true
		}
	}
	return false
}

// loadKeyPair is tls.LoadX509KeyPair reading both files through
// safefile: regular files (after symlinks) of at most safefile.MaxSize.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := safefile.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := safefile.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
