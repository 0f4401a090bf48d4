//go:build unix

package auditsink

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/tlsconf/tlstest"
)

// eventually polls f for up to 5 s (a FIN or a byte crosses loopback at
// once, but the peer's goroutine runs when it runs).
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The syslog sink's look before each batch (alive) sees a collector that
// closed the connection, or that sent anything, without a read deadline:
// under load a 1 ms deadline expired before the read looked, a closed
// connection passed for a live one, and the batch was written into it
// and lost (TestSinksDeliverEverythingAcrossAnOutage failed so, 1 in 24
// runs under three parallel -race runs).
func TestSyslogAliveSeesTheCollectorGo(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(c net.Conn) // what the collector does
	}{
		{"closes", func(c net.Conn) { c.Close() }},
		{"sends a byte", func(c net.Conn) { c.Write([]byte("x")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := acceptOne(ln)
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			srv := <-accepted
			defer srv.Close()
			tgt := &syslogTarget{network: "tcp", conn: c}
			if !tgt.alive() {
				t.Fatal("an open, quiet connection is taken for dead")
			}
			// A deadline already past must not decide it.
			c.SetReadDeadline(time.Now().Add(-time.Second))
			tc.end(srv)
			eventually(t, "alive never saw the collector "+tc.name, func() bool { return !tgt.alive() })
		})
	}
}

// Over TLS the server's session tickets (TLS 1.3) wait on the socket
// after the handshake: read by the TLS layer, they do not end the
// connection; a close does.
func TestSyslogAliveOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "pamctl test CA")
	pair, err := tls.X509KeyPair(ca.Issue(t, "siem", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server's side of the handshake runs while the client dials.
	handshaken := make(chan net.Conn, 1)
	go func() {
		c := <-acceptOne(ln)
		c.(*tls.Conn).Handshake()
		handshaken <- c
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-handshaken
	time.Sleep(50 * time.Millisecond) // the tickets arrive
	tgt := &syslogTarget{network: "tcp", conn: c}
	if !tgt.alive() {
		t.Fatal("a TLS connection with session tickets waiting is taken for dead")
	}
	if !tgt.alive() {
		t.Fatal("a quiet TLS connection is taken for dead")
	}
	srv.Close()
	eventually(t, "alive never saw the TLS collector close", func() bool { return !tgt.alive() })
}

// acceptOne hands over the first connection ln accepts.
func acceptOne(ln net.Listener) <-chan net.Conn {
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	return accepted
}
