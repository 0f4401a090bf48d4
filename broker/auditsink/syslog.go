package auditsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// RFC 5424 header fields pamctl sends: facility 13 (log audit), severity 6
// (informational), APP-NAME pamctl, MSGID the event type.
const (
	syslogPRI = 13*8 + 6
	// maxUDP is the largest syslog datagram sent; bigger events need TCP.
	maxUDP = 65000
	// MinMaxMessage is the smallest max_message: RFC 5424's "SHOULD be
	// able to accept" 2048 bytes, and more than any stand-in or head
	// takes (with a 255-byte hostname).
	MinMaxMessage = 2048
)

// syslogTarget sends one RFC 5424 message per record, octet-counted on TCP
// (RFC 6587 section 3.4.1), one datagram per message on UDP.
type syslogTarget struct {
	network string // tcp | udp
	addr    string
	tls     *tls.Config // tcp+tls
	host    string
	pid     string
	conn    net.Conn
	max     int // the largest message sent (SinkConfig.MaxMessage; UDP: maxUDP at most); 0: any
	// standIns sent by the last Deliver (events over max).
	standIns []StandIn
}

func newSyslogTarget(c SinkConfig) (*syslogTarget, error) {
	scheme, hostport, err := parseSyslogAddr(c.Addr)
	if err != nil {
		return nil, err
	}
	t := &syslogTarget{network: "tcp", addr: hostport, host: syslogHost(), pid: strconv.Itoa(os.Getpid())}
	t.max = c.MaxMessage
	switch scheme {
	case "udp":
		t.network = "udp"
		if t.max == 0 || t.max > maxUDP {
			t.max = maxUDP
		}
	case "tcp+tls":
		host, _, _ := net.SplitHostPort(hostport)
		if t.tls, err = tlsConfig(c.CAFile, host); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// syslogHost is the HOSTNAME field: printable ASCII, at most 255 bytes.
func syslogHost() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "-"
	}
	return printASCII(h, 255)
}

func printASCII(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// Message formats rec as an RFC 5424 message (without framing).
func (t *syslogTarget) message(rec Record) ([]byte, error) {
	line, err := rec.Line()
	if err != nil {
		return nil, err
	}
	ts := rec.time().UTC()
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s pamctl %s %s - ", syslogPRI, ts.Format("2006-01-02T15:04:05.000000Z"), t.host, t.pid, printASCII(rec.Kind(), 32))
	b.Write(line)
	return b.Bytes(), nil
}

func (t *syslogTarget) takeStandIns() []StandIn {
	s := t.standIns
	t.standIns = nil
	return s
}

func (t *syslogTarget) Deliver(ctx context.Context, recs []Record) error {
	var frames [][]byte
	t.standIns = nil
	for _, r := range recs {
		msg, err := t.message(r)
		if err != nil {
			return err
		}
		if t.max > 0 && len(msg) > t.max && r.Event != nil {
			// The collector cannot carry it (one datagram; its message
			// limit, which would cut it): send its stand-in, so the events
			// after it still go (and the gap shows).
			why := fmt.Sprintf("the event is more than the sink's max_message (%d bytes) allows", t.max)
			if t.network == "udp" && t.max == maxUDP {
				why = "the event is more than a UDP syslog datagram carries (use tcp:// or tcp+tls:// for whole events)"
			}
			si := standInFor(r.Event, len(msg), t.max, why)
			if msg, err = t.message(Record{StandIn: si}); err != nil {
				return err
			}
			t.standIns = append(t.standIns, *si)
		}
		if t.max > 0 && len(msg) > t.max {
			return fmt.Errorf("syslog: seq %d (%s) is %d bytes, more than the sink carries (%d): raise max_message, or use tcp:// or tcp+tls://", r.Seq(), r.Kind(), len(msg), t.max)
		}
		if t.network == "udp" {
			frames = append(frames, msg)
			continue
		}
		frames = append(frames, append(strconv.AppendInt(nil, int64(len(msg)), 10), ' '), msg)
	}
	if err := t.connect(ctx); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		t.conn.SetWriteDeadline(dl)
	}
	if t.network == "udp" {
		for _, f := range frames {
			if _, err := t.conn.Write(f); err != nil {
				t.drop()
				return fmt.Errorf("syslog: send to %s: %w", t.addr, err)
			}
		}
		return nil
	}
	buf := net.Buffers(frames)
	if _, err := buf.WriteTo(t.conn); err != nil {
		t.drop()
		return fmt.Errorf("syslog: send to %s: %w", t.addr, err)
	}
	return nil
}

// connect dials when there is no connection, or when the collector closed
// the one we have: syslog receivers never send, so a readable EOF means
// the peer is gone and a write would vanish into a dead socket.
func (t *syslogTarget) connect(ctx context.Context) error {
	if t.conn != nil && t.network == "tcp" && !t.alive() {
		t.drop()
	}
	if t.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		return fmt.Errorf("syslog: connect to %s: %w", t.addr, err)
	}
	if t.tls != nil {
		tc := tls.Client(c, t.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return fmt.Errorf("syslog: TLS handshake with %s: %w", t.addr, err)
		}
		c = tc
	}
	t.conn = c
	return nil
}

// peerState is what a look at a connection's socket found.
type peerState int

const (
	peerIdle   peerState = iota // nothing waiting, not closed
	peerSent                    // bytes wait to be read
	peerClosed                  // closed by the peer, or failed
)

// alive reports whether the collector still has the connection open.
// The socket is looked at first (peek): closed is dead; nothing waiting
// is alive. A plain collector never sends, so bytes waiting end the
// connection too (it is dialled again and the batch sent whole); over
// TLS they may be the server's session tickets, so the TLS layer reads
// them, and a close_notify or data ends it.
func (t *syslogTarget) alive() bool {
	raw := t.conn
	tc, isTLS := t.conn.(*tls.Conn)
	if isTLS {
		raw = tc.NetConn()
	}
	st, ok := peek(raw)
	switch {
	case ok && st == peerClosed:
		return false
	case ok && st == peerIdle:
		return true
	case ok && !isTLS:
		return false // a plain collector sent something
	}
	// Over TLS with bytes waiting (a record arrived: it is read within
	// the deadline), or where the socket cannot be peeked: a short read.
	wait := time.Millisecond
	if ok {
		wait = 100 * time.Millisecond
	}
	t.conn.SetReadDeadline(time.Now().Add(wait))
	var one [1]byte
	_, err := t.conn.Read(one[:])
	t.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (t *syslogTarget) drop() {
	if t.conn != nil {
		t.conn.Close()
		t.conn = nil
	}
}

func (t *syslogTarget) Close() error {
	t.drop()
	return nil
}
