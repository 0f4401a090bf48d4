package sse

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// scripted hands out its pieces one per Read, as a socket delivers what
// arrived; a Read past the script is where a real source would wait.
type scripted struct {
	t      *testing.T
	pieces []string
	rd     *Reader
	// waits counts Reads past the script, held those made holding the
	// input buffer.
	waits, held int
}

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.pieces) == 0 {
		s.waits++
		if s.rd.big != nil {
			s.held++
		}
		if (s.rd.big == nil) != (len(p) == 1) {
			s.t.Errorf("the Reader reads %d bytes holding buffer %v", len(p), s.rd.big != nil)
		}
		return 0, ErrWouldBlock
	}
	n := copy(p, s.pieces[0])
	if s.pieces[0] = s.pieces[0][n:]; s.pieces[0] == "" {
		s.pieces = s.pieces[1:]
	}
	return n, nil
}

func TestWaitingReaderHoldsNoBuffer(t *testing.T) {
	big := strings.Repeat("x", 3*readBufSize)
	for _, tc := range []struct {
		name   string
		pieces []string
		want   []string
		// held: the last piece was one byte read alone, so the read
		// after it, which takes the buffer for whatever else came,
		// waits holding it (as every read did before).
		held bool
	}{
		{"one event per read", []string{"data: a\n\n", "data: b\n\n"}, []string{"a", "b"}, false},
		// The event's last byte arrives alone: it is dispatched at
		// once, not after a read that would wait for the next event.
		{"a lone blank line ends the event", []string{"data: a\n", "\n"}, []string{"a"}, true},
		{"a lone CR", []string{"data: a\r", "\r"}, []string{"a"}, true},
		{"a byte at a time", strings.Split("data: ab\n\n", ""), []string{"ab"}, false},
		{"an odd number of bytes at a time", strings.Split("data: abc\n\n", ""), []string{"abc"}, true},
		{"an event and a byte", []string{"data: a\n", "\nd", "ata: b\n\n"}, []string{"a", "b"}, false},
		{"reads that fill the buffer", []string{"data: " + big + "\n\ndata: c\n\n"}, []string{big, "c"}, false},
		{"a BOM in pieces", []string{"\xef", "\xbb", "\xbfdata: a\n\n"}, []string{"a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &scripted{t: t, pieces: tc.pieces}
			rd := NewReader(src, Limits{})
			src.rd = rd
			var got []string
			for len(got) < len(tc.want) {
				ev, err := rd.Next()
				if errors.Is(err, ErrWouldBlock) {
					t.Fatalf("waited for more input after %q; want %q", got, tc.want)
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev.Data)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("event %d: got %.20q, want %.20q", i, got[i], tc.want[i])
				}
			}
			if _, err := rd.Next(); !errors.Is(err, ErrWouldBlock) || src.waits != 1 {
				t.Fatalf("after the last event: %v with %d waits, want one wait", err, src.waits)
			}
			if held := src.held > 0; held != tc.held {
				t.Fatalf("waited holding the input buffer: %v, want %v", held, tc.held)
			}
		})
	}
}

// A burst of events at hand (the 43-event stream, about 12 KiB,
// as a plain copy of the upstream's body would take it) comes in one
// fill after the one-byte wait: the relay then writes it to the client
// in one flush, not one per 4 KiB.
func TestBurstIsOneFill(t *testing.T) {
	var burst strings.Builder
	for i := range 43 {
		fmt.Fprintf(&burst, "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word %02d %s\"}}]}\n\n", i, strings.Repeat("z", 210))
	}
	if burst.Len() < 12<<10 {
		t.Fatalf("burst of %d bytes, want at least 12 KiB", burst.Len())
	}
	src := &counted{r: strings.NewReader(burst.String())}
	rd := NewReader(src, Limits{})
	for i := range 43 {
		if _, err := rd.Next(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if src.reads != 2 {
		t.Fatalf("%d reads for a %d-byte burst at hand, want 2 (the one-byte wait and one fill)", src.reads, burst.Len())
	}
}

// counted counts the Reads that brought bytes.
type counted struct {
	r     io.Reader
	reads int
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.reads++
	}
	return n, err
}

// Readers that end give their input buffers back; the pool serves the
// next ones.
func TestEndedReaderReleasesBuffer(t *testing.T) {
	in := "data: " + strings.Repeat("y", 100) + "\n\n"
	stream := func() {
		rd := NewReader(iotest.HalfReader(strings.NewReader(in)), Limits{})
		for {
			if _, err := rd.Next(); err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
		}
		if rd.big != nil {
			t.Fatal("an ended Reader holds its input buffer")
		}
	}
	stream()
	const n = 500
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		stream()
	}
	runtime.ReadMemStats(&after)
	// The Reader, its source and the event: well under the 32 KiB buffer
	// each stream would allocate without the pool.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > readBufSize/2 {
		t.Fatalf("%d bytes allocated per stream, want a pooled input buffer", per)
	}
}
