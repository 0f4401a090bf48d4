package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
)

// replace writes b to path the way cert tools do: a temp file renamed over.
func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

type events struct {
	mu       sync.Mutex
	errs     []error
	reloads  int
	reloaded chan struct{}
}

func newEvents() *events { return &events{reloaded: make(chan struct{}, 16)} }

func (e *events) opts() Options {
	return Options{
		OnError:  func(err error) { e.mu.Lock(); e.errs = append(e.errs, err); e.mu.Unlock() },
		OnReload: func() { e.mu.Lock(); e.reloads++; e.mu.Unlock(); e.reloaded <- struct{}{} },
		Poll:     -1, Settle: 20 * time.Millisecond,
	}
}

func (e *events) errCount() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.errs) }

func (e *events) wait(t *testing.T) {
	t.Helper()
	select {
	case <-e.reloaded:
	case <-time.After(30 * time.Second): // a loaded machine under -race
		t.Fatal("no reload within 30s")
	}
}

// serve runs an HTTPS server with s's config that answers the client
// certificate's CN (or "-").
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, cn)
	}), ErrorLog: nil}
	go srv.Serve(tls.NewListener(ln, s.TLSConfig()))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func client(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs},
	}}
}

// get fetches url and returns the server certificate's CN, the body and
// whether the connection was reused.
func get(t *testing.T, c *http.Client, url string) (serverCN, body string, reused bool, err error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := c.Do(req)
	if err != nil {
		return "", "", false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.TLS.PeerCertificates[0].Subject.CommonName, string(b), reused, nil
}

func writePair(t *testing.T, dir string, cert, key []byte) Config {
	t.Helper()
	c := Config{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	replace(t, c.CertFile, cert)
	replace(t, c.KeyFile, key)
	return c
}

// TestReloadOnChangeKeepsOpenConnections rotates the files under a running
// server: new handshakes see the new certificate, an open keep-alive
// connection keeps working, no restart.
func TestReloadOnChangeKeepsOpenConnections(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c1, k1 := ca.Issue(t, "v1", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c1, k1)
	ev := newEvents()
	// The new pair is two renames: Settle must outlast the gap between
	// them even on a loaded machine, or the watch may read the new key
	// beside the old certificate and report it (ev.errs below).
	opts := ev.opts()
	opts.Settle = time.Second
	s, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Watch(ctx)
	url := serve(t, s)

	old := client(ca.Pool())
	if cn, _, _, err := get(t, old, url); err != nil || cn != "v1" {
		t.Fatalf("before rotation: %q %v", cn, err)
	}
	c2, k2 := ca.Issue(t, "v2", time.Now().Add(time.Hour))
	// Both files written first, then renamed over back to back.
	for _, f := range []struct {
		path string
		b    []byte
	}{{cfg.KeyFile, k2}, {cfg.CertFile, c2}} {
		if err := os.WriteFile(f.path+".new", f.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{cfg.KeyFile, cfg.CertFile} {
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	ev.wait(t)
	if s.Leaf().Subject.CommonName != "v2" {
		t.Fatalf("leaf after rotation: %s", s.Leaf().Subject.CommonName)
	}
	// The open connection carries on with the certificate it shook hands with.
	cn, _, reused, err := get(t, old, url)
	if err != nil || !reused || cn != "v1" {
		t.Fatalf("open connection after rotation: cn=%q reused=%v err=%v", cn, reused, err)
	}
	// A new handshake gets the new certificate.
	if cn, _, reused, err := get(t, client(ca.Pool()), url); err != nil || reused || cn != "v2" {
		t.Fatalf("new connection after rotation: cn=%q reused=%v err=%v", cn, reused, err)
	}
	if ev.errCount() != 0 {
		t.Fatalf("errors reported: %v", ev.errs)
	}
}

// TestReloadKeepsOldCertOnBadFiles: garbage, a key of another certificate,
// an expired certificate and a missing file each leave the certificate in
// force, are reported once per bad content, and good files recover.
func TestReloadKeepsOldCertOnBadFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c1, k1 := ca.Issue(t, "v1", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c1, k1)
	ev := newEvents()
	s, err := NewServer(cfg, ev.opts())
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	_, otherKey := ca.Issue(t, "other", time.Now().Add(time.Hour))
	expired, expiredKey := ca.Issue(t, "old", time.Now().Add(-time.Minute))
	for _, bad := range []struct {
		name, want string
		cert, key  []byte
	}{
		{"garbage cert", "PEM", []byte("this is not a certificate\n"), k1},
		{"key of another certificate", "key must belong", c1, otherKey},
		{"expired certificate", "expired", expired, expiredKey},
	} {
		t.Run(bad.name, func(t *testing.T) {
			replace(t, cfg.CertFile, bad.cert)
			replace(t, cfg.KeyFile, bad.key)
			before := ev.errCount()
			err := s.Reload()
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("Reload: %v, want %q", err, bad.want)
			}
			_ = s.Reload() // the same bad files again: not reported twice
			if n := ev.errCount() - before; n != 1 {
				t.Fatalf("reported %d times, want once", n)
			}
			if cn, _, _, err := get(t, client(ca.Pool()), url); err != nil || cn != "v1" {
				t.Fatalf("still serving: %q %v", cn, err)
			}
		})
	}
	c2, k2 := ca.Issue(t, "v2", time.Now().Add(time.Hour))
	writePair(t, dir, c2, k2)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn, _, _, err := get(t, client(ca.Pool()), url); err != nil || cn != "v2" {
		t.Fatalf("after good files: %q %v", cn, err)
	}
	// Bad files at start are an error, not a server without a certificate.
	replace(t, cfg.CertFile, []byte("garbage"))
	if _, err := NewServer(cfg, Options{}); err == nil {
		t.Fatal("NewServer accepted a garbage certificate")
	}
}

// TestReloadOnKubernetesSymlinkSwap: a mounted secret's files are symlinks
// through ..data, which Kubernetes swaps atomically to a new directory;
// the files themselves are never written. The watch must see it.
func TestReloadOnKubernetesSymlinkSwap(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	version := func(name, cn string) {
		d := filepath.Join(dir, name)
		os.Mkdir(d, 0o700)
		c, k := ca.Issue(t, cn, time.Now().Add(time.Hour))
		os.WriteFile(filepath.Join(d, "tls.crt"), c, 0o600)
		os.WriteFile(filepath.Join(d, "tls.key"), k, 0o600)
	}
	version("..2026_01", "v1")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..2026_01", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt")))
	must(os.Symlink("..data/tls.key", filepath.Join(dir, "tls.key")))
	ev := newEvents()
	s, err := NewServer(Config{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}, ev.opts())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Watch(ctx) // watching when it returns
	version("..2026_02", "v2")
	must(os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(os.RemoveAll(filepath.Join(dir, "..2026_01")))
	ev.wait(t)
	if cn := s.Leaf().Subject.CommonName; cn != "v2" {
		t.Fatalf("after the swap: %s", cn)
	}
}

// TestMutualTLS: with client_ca_file a client without a certificate, or
// with one from another CA, is refused at the handshake; a rotated client
// CA file is picked up.
func TestMutualTLS(t *testing.T) {
	ca, clients, other := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca"), tlstest.NewCA(t, "other-ca")
	dir := t.TempDir()
	c, k := ca.Issue(t, "server", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c, k)
	cfg.ClientCAFile = filepath.Join(dir, "clients.PEM")
	replace(t, cfg.ClientCAFile, clients.PEM)
	s, err := NewServer(cfg, Options{Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	pair := func(ca *tlstest.CA, cn string) tls.Certificate {
		c, k := ca.Issue(t, cn, time.Now().Add(time.Hour))
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, _, _, err := get(t, client(ca.Pool()), url); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if _, _, _, err := get(t, client(ca.Pool(), pair(other, "mallory")), url); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	if _, body, _, err := get(t, client(ca.Pool(), pair(clients, "proxy-1")), url); err != nil || body != "proxy-1" {
		t.Fatalf("good client certificate: %q %v", body, err)
	}
	// Rotate the client CA: the old CA's clients are refused from now on.
	replace(t, cfg.ClientCAFile, other.PEM)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := get(t, client(ca.Pool(), pair(clients, "proxy-1")), url); err == nil {
		t.Fatal("the rotated-out client CA is still trusted")
	}
	if _, body, _, err := get(t, client(ca.Pool(), pair(other, "proxy-2")), url); err != nil || body != "proxy-2" {
		t.Fatalf("client of the new CA: %q %v", body, err)
	}
	replace(t, cfg.ClientCAFile, []byte("junk"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("junk client CA: %v", err)
	}
}

// TestMinVersion: a TLS 1.1 client is refused.
func TestMinVersion(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	c, k := ca.Issue(t, "v1", time.Now().Add(time.Hour))
	s, err := NewServer(writePair(t, t.TempDir(), c, k), Options{Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}}}
	if _, err := cl.Get(url); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestCheckListener(t *testing.T) {
	on := Config{CertFile: "c", KeyFile: "k"}
	for _, addr := range []string{"0.0.0.0:8700", ":8700", "[::]:8700", "10.1.2.3:8700", "192.168.1.5:8700", "pamctl.example.com:8700", "[2001:db8::1]:8700", "garbage"} {
		_, err := CheckListener("broker", addr, Config{}, false)
		if err == nil {
			t.Errorf("%s: plaintext allowed", addr)
			continue
		}
		for _, fix := range []string{"broker.tls.cert_file", "broker.tls.key_file", "broker.insecure_plaintext: true"} {
			if !strings.Contains(err.Error(), fix) {
				t.Errorf("%s: error %q does not name %q", addr, err, fix)
			}
		}
		if w, err := CheckListener("broker", addr, Config{}, true); err != nil || !strings.Contains(w, "insecure_plaintext") {
			t.Errorf("%s with insecure_plaintext: %q %v", addr, w, err)
		}
		if w, err := CheckListener("broker", addr, on, false); err != nil || w != "" {
			t.Errorf("%s with TLS: %q %v", addr, w, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:8700", "127.0.0.2:0", "[::1]:8701", "localhost:8700", "LOCALHOST:1"} {
		if w, err := CheckListener("proxy", addr, Config{}, false); err != nil || w != "" {
			t.Errorf("%s: loopback refused: %q %v", addr, w, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{CertFile: "c"}, {KeyFile: "k"}, {ClientCAFile: "ca"}} {
		if err := c.Validate("proxy.tls"); err == nil || !strings.Contains(err.Error(), "proxy.tls") {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := (Config{CertFile: "c", KeyFile: "k", ClientCAFile: "ca"}).Validate("x"); err != nil {
		t.Error(err)
	}
}

func TestClientTrust(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	c, k := ca.Issue(t, "srv", time.Now().Add(time.Hour))
	s, err := NewServer(writePair(t, t.TempDir(), c, k), Options{Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	sys, err := HTTPClient("", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Get(url); err == nil || !IsUnknownAuthority(err) {
		t.Fatalf("system roots trusted a private CA: %v", err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.PEM")
	os.WriteFile(caFile, ca.PEM, 0o644)
	hc, err := HTTPClient(caFile, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol %s, want HTTP/1.1 only (the listeners' guards are HTTP/1.1's)", resp.Proto)
	}
	os.WriteFile(caFile, []byte("nope"), 0o644)
	if _, err := HTTPClient(caFile, 0); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("junk CA file: %v", err)
	}
	if _, err := HTTPClient(filepath.Join(t.TempDir(), "missing.pem"), 0); err == nil {
		t.Fatal("missing CA file accepted")
	}
}

func TestGenerateDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := GenerateDev(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, err, fi)
		}
	}
	s, err := NewServer(Config{CertFile: f.CertFile, KeyFile: f.KeyFile}, Options{Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Leaf()
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("key is not P-256: %T", leaf.PublicKey)
	}
	caPEM, _ := os.ReadFile(f.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("valid for example.com")
	}
	// A second run reuses valid files (a handed-out --ca-file stays good)...
	if f2, err := GenerateDev(dir); err != nil || f2 != f {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.CAFile); string(again) != string(caPEM) {
		t.Fatal("valid dev CA regenerated")
	}
	// ...and replaces broken ones.
	os.WriteFile(f.KeyFile, []byte("junk"), 0o600)
	if _, err := GenerateDev(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile); err != nil {
		t.Fatalf("not regenerated: %v", err)
	}
	if again, _ := os.ReadFile(f.CAFile); string(again) == string(caPEM) {
		t.Fatal("broken dev files kept their CA")
	}
}

// TestClientCertificateRotation: a client's mTLS certificate is re-read
// when its files change; a broken pair keeps the previous one.
func TestClientCertificateRotation(t *testing.T) {
	ca, clients := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca")
	dir := t.TempDir()
	c, k := ca.Issue(t, "server", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c, k)
	cfg.ClientCAFile = filepath.Join(dir, "clients.PEM")
	replace(t, cfg.ClientCAFile, clients.PEM)
	s, err := NewServer(cfg, Options{Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	caFile := filepath.Join(dir, "server-ca.PEM")
	replace(t, caFile, ca.PEM)
	cdir := t.TempDir()
	cc, ck := clients.Issue(t, "proxy-1", time.Now().Add(time.Hour))
	files := ClientFiles{CAFile: caFile, CertFile: filepath.Join(cdir, "c.crt"), KeyFile: filepath.Join(cdir, "c.key")}
	replace(t, files.CertFile, cc)
	replace(t, files.KeyFile, ck)
	tc, err := NewClientConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	if _, body, _, err := get(t, fresh(), url); err != nil || body != "proxy-1" {
		t.Fatalf("first: %q %v", body, err)
	}
	cc2, ck2 := clients.Issue(t, "proxy-1-renewed", time.Now().Add(time.Hour))
	replace(t, files.KeyFile, ck2)
	replace(t, files.CertFile, cc2)
	if _, body, _, err := get(t, fresh(), url); err != nil || body != "proxy-1-renewed" {
		t.Fatalf("after rotation: %q %v", body, err)
	}
	replace(t, files.CertFile, []byte("garbage"))
	if _, body, _, err := get(t, fresh(), url); err != nil || body != "proxy-1-renewed" {
		t.Fatalf("after a broken rotation: %q %v", body, err)
	}
	if _, err := NewClientConfig(ClientFiles{CertFile: files.CertFile}); err == nil {
		t.Fatal("a certificate without a key accepted")
	}
	if _, err := NewClientConfig(ClientFiles{CertFile: files.CertFile, KeyFile: files.KeyFile}); err == nil {
		t.Fatal("a garbage client certificate accepted at start")
	}
}

// TestClientCertificateOnlyWhereItsCAIsAccepted: the client certificate
// goes to a server whose acceptable CAs include its issuer (pamctl's mTLS
// listener names its client_ca_file), not to a server that asks for
// certificates from other CAs (an IdP with its own client PKI).
func TestClientCertificateOnlyWhereItsCAIsAccepted(t *testing.T) {
	serverCA, ours, theirs := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca"), tlstest.NewCA(t, "idp-client-ca")
	cdir := t.TempDir()
	certFile, keyFile := ours.IssueFiles(t, cdir, "proxy-1", time.Now().Add(time.Hour))
	tc, err := NewClientConfig(ClientFiles{CAFile: serverCA.WriteFile(t, cdir, "server-ca.pem"), CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	sc, sk := serverCA.Issue(t, "127.0.0.1", time.Now().Add(time.Hour))
	pair, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	peer := func(accepted *x509.CertPool) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TLS.PeerCertificates) == 0 {
				io.WriteString(w, "none")
				return
			}
			io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
		// Asked for, not required: the server says whom it accepts.
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, ClientCAs: accepted}
		srv.StartTLS()
		defer srv.Close()
		res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if got := peer(ours.Pool()); got != "proxy-1" {
		t.Fatalf("a server accepting the client's CA saw %q", got)
	}
	if got := peer(theirs.Pool()); got != "none" {
		t.Fatalf("a server accepting another CA saw %q", got)
	}
	// A client_ca_file that pins the client's own certificate names the
	// leaf, not its issuer.
	pinned := x509.NewCertPool()
	leafPEM, err := os.ReadFile(certFile)
	if err != nil || !pinned.AppendCertsFromPEM(leafPEM) {
		t.Fatalf("pin the leaf: %v", err)
	}
	if got := peer(pinned); got != "proxy-1" {
		t.Fatalf("a server pinning the client's certificate saw %q", got)
	}
}

// TestReloadRecoversFromMissingFile: a file missing mid-update is reported;
// when the files in force are back, the recovery is reported too, so the
// health check does not stay failing.
func TestReloadRecoversFromMissingFile(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	c1, k1 := ca.Issue(t, "v1", time.Now().Add(time.Hour))
	cfg := writePair(t, dir, c1, k1)
	ev := newEvents()
	s, err := NewServer(cfg, ev.opts())
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	os.Remove(cfg.KeyFile)
	before := ev.errCount()
	if err := s.Reload(); err == nil {
		t.Fatal("missing key file accepted")
	}
	if ev.errCount() != before+1 {
		t.Fatal("missing key file not reported")
	}
	if cn, _, _, err := get(t, client(ca.Pool()), url); err != nil || cn != "v1" {
		t.Fatalf("still serving after a missing key: %q %v", cn, err)
	}
	replace(t, cfg.KeyFile, k1)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ev.reloaded:
	default:
		t.Fatal("recovery to the files in force not reported")
	}
}
