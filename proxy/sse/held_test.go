package sse

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// pieceSource delivers its pieces as a socket would, one or more Reads per
// piece, and answers ErrWouldBlock once at the end of each piece: where a
// real source would wait for the upstream's next write.
type pieceSource struct {
	pieces    []string
	delivered int // bytes handed out
	blocked   bool
}

func (s *pieceSource) Read(p []byte) (int, error) {
	if len(s.pieces) == 0 {
		return 0, io.EOF
	}
	if s.pieces[0] == "" {
		if !s.blocked {
			s.blocked = true
			return 0, ErrWouldBlock
		}
		s.blocked = false
		s.pieces = s.pieces[1:]
		if len(s.pieces) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, s.pieces[0])
	s.pieces[0] = s.pieces[0][n:]
	s.delivered += n
	return n, nil
}

func splitPieces(in string, cuts []byte) []string {
	var pieces []string
	for _, c := range cuts {
		if in == "" {
			break
		}
		n := int(c)%17 + 1
		if c >= 200 {
			n = int(c) * 40 // sometimes a piece larger than the buffer
		}
		n = min(n, len(in))
		pieces = append(pieces, in[:n])
		in = in[n:]
	}
	if in != "" {
		pieces = append(pieces, in)
	}
	return pieces
}

// checkNothingHeld reads in through a source cut at cuts: whenever the
// Reader would wait, it must have dispatched every event whose bytes have
// arrived (what a Reader of the delivered prefix, ended there, dispatches).
func checkNothingHeld(t *testing.T, in string, cuts []byte) {
	t.Helper()
	lim := Limits{MaxLine: 1 << 12, MaxEvent: 1 << 13}
	src := &pieceSource{pieces: splitPieces(in, cuts)}
	rd := NewReader(src, lim)
	var got []Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, ErrWouldBlock) {
			want, _, werr := readAll(t, strings.NewReader(in[:src.delivered]), lim)
			if werr != nil {
				return
			}
			if len(got) != len(want) {
				t.Fatalf("%q cut %v: waiting after %d bytes having dispatched %d events, want %d", in, cuts, src.delivered, len(got), len(want))
			}
			continue
		}
		if err != nil {
			break
		}
		got = append(got, ev)
	}
	want, _, _ := readAll(t, strings.NewReader(in), lim)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%q cut %v: got %+v, want %+v", in, cuts, got, want)
	}
}

func TestNothingHeldWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cuts []byte
	}{
		{"data: a\n\ndata: b\n\n", []byte{8, 0, 7}},
		{"data: a\n\n", []byte{6, 0}},
		{"data: a\r\r", []byte{7, 0}},
		{"data: a\r\n\r\n", []byte{7, 0, 0, 0}},
		{"\xef\xbb\xbfdata: a\n\n", []byte{0, 0, 0, 8, 0}},
		{"data: " + strings.Repeat("x", 5000) + "\n\ndata: y\n\n", []byte{210, 3, 0}},
	} {
		checkNothingHeld(t, tc.in, tc.cuts)
	}
}

func FuzzNothingHeldWhileWaiting(f *testing.F) {
	f.Add("data: a\n\ndata: b\n\n", []byte{8, 0, 7})
	f.Add("\xef\xbb\xbfevent: x\r\ndata: a\r\n\r\n: c\rdata: b\r\r", []byte{1, 1, 1, 3, 0, 5})
	f.Fuzz(func(t *testing.T, in string, cuts []byte) {
		checkNothingHeld(t, in, cuts)
	})
}

// Many Readers at once share the buffer pool: each must read only its own
// stream (run with -race).
func TestConcurrentReadersOwnTheirInput(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			var want []string
			for i := range 200 {
				d := fmt.Sprintf("g%d-e%d-%s", g, i, strings.Repeat(string(rune('a'+g)), (i*37)%700))
				want = append(want, d)
				b.WriteString("data: " + d + "\n\n")
			}
			cuts := make([]byte, 4000)
			for i := range cuts {
				cuts[i] = byte((i*31 + g*7) % 256)
			}
			src := &pieceSource{pieces: splitPieces(b.String(), cuts)}
			rd := NewReader(src, Limits{})
			var got []string
			for {
				ev, err := rd.Next()
				if errors.Is(err, ErrWouldBlock) {
					continue
				}
				if err != nil {
					break
				}
				got = append(got, ev.Data)
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("reader %d read another stream's bytes", g)
			}
		}()
	}
	wg.Wait()
}
