package proxy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// A stream's ready events stay until taken or read, however the buffer is
// released around them, and a stream that has taken everything holds no
// buffer while it waits.
func TestReadyEventsKeepWhatIsNotTaken(t *testing.T) {
	var r readyEvents
	r.Write([]byte("data: one\n\n"))
	r.WriteString("data: two\n\n")
	p := make([]byte, 4)
	if n, err := r.Read(p); n != 4 || err != nil || string(p) != "data" {
		t.Fatalf("Read: %d %v %q", n, err, p)
	}
	r.release() // not all read: kept
	if got := string(r.take()); got != ": one\n\ndata: two\n\n" {
		t.Fatalf("take after a partial read: %q", got)
	}
	if r.Len() != 0 {
		t.Fatalf("Len after take: %d", r.Len())
	}
	r.release()
	if r.buf != nil || r.Len() != 0 || r.take() != nil {
		t.Fatal("a stream that took everything still holds a buffer")
	}
	if n, err := r.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("Read of nothing: %d %v", n, err)
	}

	// A large event's buffer is not pooled, but still relayed whole.
	big := strings.Repeat("x", maxReadyBuf+1)
	r.WriteString(big)
	if got := r.take(); !bytes.Equal(got, []byte(big)) {
		t.Fatalf("large event: %d bytes", len(got))
	}
	r.release()
	r.Write([]byte("data: after\n\n"))
	r.Reset()
	if r.Len() != 0 {
		t.Fatal("Reset kept bytes")
	}
}
