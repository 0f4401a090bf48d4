package proxy

import (
	"io"
	"sync"
)

// readyEvents holds the complete events a stream has ready for the client,
// in a buffer borrowed from readyBufs while it holds some: a stream
// waiting for its upstream holds none, and the buffer a stream filled goes
// to the next stream rather than to the collector. A socket read brings a
// few events, so each stream grew a buffer of its own by doubling, a fifth
// of all the bytes a relayed stream allocated (docs/performance.md).
type readyEvents struct {
	buf *[]byte // borrowed from readyBufs; nil when none is held
	off int     // (*buf)[:off] has been taken
}

// readyBufs are the buffers readyEvents borrow; larger ones (a long event)
// are left to the collector, so the pool keeps no large arrays alive.
var readyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, readyBufSize)
	return &b
}}

const (
	readyBufSize = 4 << 10 // a socket read's worth of events
	maxReadyBuf  = 64 << 10
)

// Len is the number of bytes ready and not yet taken.
func (r *readyEvents) Len() int {
	if r.buf == nil {
		return 0
	}
	return len(*r.buf) - r.off
}

// Write appends b to what is ready.
func (r *readyEvents) Write(b []byte) {
	if r.buf == nil {
		r.buf = readyBufs.Get().(*[]byte)
	}
	*r.buf = append(*r.buf, b...)
}

// WriteString appends t to what is ready.
func (r *readyEvents) WriteString(t string) {
	if r.buf == nil {
		r.buf = readyBufs.Get().(*[]byte)
	}
	*r.buf = append(*r.buf, t...)
}

// take returns every byte ready and marks it taken. The bytes are lent:
// they stay valid until the next Write or release.
func (r *readyEvents) take() []byte {
	if r.buf == nil {
		return nil
	}
	b := (*r.buf)[r.off:]
	r.off = len(*r.buf)
	return b
}

// Read copies ready bytes into p.
func (r *readyEvents) Read(p []byte) (int, error) {
	if r.Len() == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*r.buf)[r.off:])
	r.off += n
	return n, nil
}

// Reset drops what is ready.
func (r *readyEvents) Reset() {
	if r.buf != nil {
		*r.buf = (*r.buf)[:0]
		r.off = 0
	}
}

// release gives the buffer back once everything in it has been taken:
// what take lent must no longer be in use.
func (r *readyEvents) release() {
	if r.buf == nil || r.Len() > 0 {
		return
	}
	b := r.buf
	r.buf, r.off = nil, 0
	if cap(*b) > maxReadyBuf {
		return
	}
	*b = (*b)[:0]
	readyBufs.Put(b)
}
