package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pamctl/pamctl/broker/safefile"
)

// DevFiles are the throwaway CA and server certificate of `serve --dev --tls`.
type DevFiles struct {
	CAFile   string // give this to the CLI: --ca-file
	CertFile string
	KeyFile  string
}

// devHosts are the names the dev certificate is valid for.
var devHosts = []string{"localhost", "127.0.0.1", "::1"}

// devValidity is how long dev certificates last; they are reused while
// they have more than a day left.
const devValidity = 30 * 24 * time.Hour

// GenerateDev writes a throwaway CA (ca.pem) and a server certificate and
// key for localhost, 127.0.0.1 and ::1 signed by it (tls.crt, tls.key),
// all ECDSA P-256, into dir (created 0700). Files left by an earlier run
// are reused while valid, so a --ca-file handed out stays good.
func GenerateDev(dir string) (DevFiles, error) {
	f := DevFiles{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if err := safefile.MkdirPrivate(dir); err != nil {
		return f, fmt.Errorf("dev TLS: %w", err)
	}
	if devFilesValid(f) {
		return f, nil
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "pamctl dev CA (throwaway)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devValidity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(devValidity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return f, err
	}
	// The CA's key is never written: nothing else can be signed with it.
	for _, w := range []struct {
		path, typ string
		der       []byte
	}{{f.KeyFile, "EC PRIVATE KEY", keyDER}, {f.CertFile, "CERTIFICATE", der}, {f.CAFile, "CERTIFICATE", caDER}} {
		if err := writeFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der})); err != nil {
			return f, fmt.Errorf("dev TLS: %w", err)
		}
	}
	return f, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writeFile replaces path atomically with an owner-only file.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// devFilesValid reports whether f holds a key pair signed by its CA,
// valid for every dev host for at least another day.
func devFilesValid(f DevFiles) bool {
	pair, err := loadKeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return false
	}
	caPEM, err := safefile.ReadFile(f.CAFile)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	at := time.Now().Add(24 * time.Hour)
	for _, h := range devHosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, CurrentTime: at}); err != nil {
			return false
		}
	}
	return true
}
