// Package sse owns Server-Sent Events framing: a streaming Reader that parses
// an event stream as the HTML Living Standard's "event stream interpretation"
// does (event, data, id and retry fields, multi-line data, comments, CRLF, LF
// and CR line ends, a leading BOM) with bounded memory, and a Writer that
// emits events with valid framing whatever their data contains.
//
// The package knows nothing about OpenAI payloads; proxy/payload builds on it.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Event is one dispatched event.
type Event struct {
	// Type is the "event" field; empty means the default type "message".
	Type string
	// Data is the "data" fields joined by "\n".
	Data string
	// ID is the value of this event's "id" field; HasID reports whether
	// the event had one (an empty id resets the client's last event id).
	ID    string
	HasID bool
	// Retry is the "retry" field in milliseconds; 0 means absent (a retry
	// of 0 is not re-emitted).
	Retry int
}

// Limits bound a Reader's memory.
type Limits struct {
	// MaxLine is the longest line accepted, in bytes (default 4 MiB).
	MaxLine int
	// MaxEvent is the largest event accepted, in bytes of data (default 8 MiB).
	MaxEvent int
}

// Default limits: an OpenAI "response.completed" event carries the whole
// response on one data line.
const (
	DefaultMaxLine  = 4 << 20
	DefaultMaxEvent = 8 << 20
)

// Errors returned by Reader.Next.
var (
	ErrLineTooLong   = errors.New("sse: line too long")
	ErrEventTooLarge = errors.New("sse: event too large")
)

// ErrWouldBlock may be returned (with no bytes) by the source of a Reader
// that would rather not wait for input now. Next then returns it having
// lost nothing: the line and event it was reading resume with the next
// call. Any other error from the source ends the stream.
var ErrWouldBlock = errors.New("sse: source would block")

// Reader reads events from a stream. Memory is bounded by Limits: one line
// plus one event's data.
type Reader struct {
	r       io.Reader
	lim     Limits
	buf     []byte // unread input is buf[off:end]: big, one, or nil
	off     int
	end     int
	big     *[]byte // the input buffer from bufs, nil while waiting
	one     [1]byte // the input buffer while waiting
	drained bool    // the last read into big left it partly empty
	err     error   // sticky error from r
	skipLF  bool    // the previous line ended with CR: ignore a leading LF
	bom     bool    // BOM already checked
	line    []byte
	partial bool // line holds the start of a line interrupted by ErrWouldBlock

	// OnComment, if set, is called with each comment line (without the
	// leading ':' and one optional space) in stream order.
	OnComment func(text string)

	// event being built
	data    []byte
	lend    bool // the event being read is lent (NextLent)
	lent    int  // data[:lent] was lent with the last event: spoil it before reuse
	hasData bool
	typ     string
	id      string
	hasID   bool
	retry   int
}

// NewReader returns a Reader of r. Zero limits take the defaults.
func NewReader(r io.Reader, lim Limits) *Reader {
	if lim.MaxLine <= 0 {
		lim.MaxLine = DefaultMaxLine
	}
	if lim.MaxEvent <= 0 {
		lim.MaxEvent = DefaultMaxEvent
	}
	return &Reader{r: r, lim: lim, drained: true}
}

// bufs holds the input buffers of Readers that are not waiting.
var bufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// readBufSize is the Reader's input buffer: what io.Copy and
// httputil.ReverseProxy read into, so one fill takes whatever the source
// has at hand, as a plain copy would. net/http's chunked body reader
// goes on across its own 4 KiB socket reads while they end inside a
// chunk, so a burst of events comes in one fill, and a source that
// yields (ErrWouldBlock) between fills when output is ready writes it to
// the client in one flush: with 4 KiB a 12 KiB burst took three flushes
// and, past net/http's 4 KiB write buffer, two write system calls each
// (docs/performance.md, nineteenth round); with 1 KiB it wrote two to
// four times as often again. Longer lines are collected across fills.
//
// A Reader holds it only while input is at hand: when a read left it
// partly empty (the source had no more) and all of it has been used, the
// next read waits with a one-byte buffer, the buffer goes back to a pool,
// and the read after that takes one again for whatever else arrived. A
// thousand streams waiting on their upstreams hold no input buffers.
const readBufSize = 32 << 10

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF; an unterminated last event (no blank line after it) is
// discarded, as the standard requires.
func (r *Reader) Next() (Event, error) {
	r.lend = false
	return r.next()
}

// NextLent is Next without a copy of the event's data: its Data aliases the
// Reader's buffer and is valid only until the next call to Next or
// NextLent, which overwrites those bytes (with 0xff, then with the next
// event's data), so a string kept past its event does not keep its text.
// For a consumer that copies whatever of an event it keeps: a relay of a
// long stream saves one allocation an event.
func (r *Reader) NextLent() (Event, error) {
	r.lend = true
	return r.next()
}

func (r *Reader) next() (Event, error) {
	if r.lent > 0 {
		spoil(r.data[:r.lent])
		r.lent = 0
	}
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if ev, ok := r.processLine(line); ok {
			return ev, nil
		}
		if len(r.data) > r.lim.MaxEvent {
			return Event{}, ErrEventTooLarge
		}
	}
}

// spoiled is what spoil writes, copied rather than stored byte by byte (a
// byte loop was a third of the reader's time per event).
var spoiled = func() (b [512]byte) {
	for i := range b {
		b[i] = 0xff
	}
	return b
}()

// spoil overwrites lent bytes with 0xff (not valid UTF-8, not JSON), so
// that a caller still reading them after the next event fails loudly.
func spoil(b []byte) {
	for len(b) > 0 {
		b = b[copy(b, spoiled[:]):]
	}
}

func (r *Reader) processLine(line []byte) (Event, bool) {
	if len(line) == 0 {
		return r.dispatch()
	}
	if line[0] == ':' {
		if r.OnComment != nil {
			c := line[1:]
			if len(c) > 0 && c[0] == ' ' {
				c = c[1:]
			}
			r.OnComment(string(c))
		}
		return Event{}, false
	}
	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		r.typ = string(value)
	case "data":
		if r.hasData {
			r.data = append(r.data, '\n')
		}
		r.data = append(r.data, value...)
		r.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.id, r.hasID = string(value), true
		}
	case "retry":
		if n, err := strconv.Atoi(string(value)); err == nil && isDigits(value) {
			r.retry = n
		}
	}
	return Event{}, false
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// dispatch ends the event being built. Per the standard an event without
// data is not dispatched (its id still updates the last event id, which a
// proxy forwards with the next event).
func (r *Reader) dispatch() (Event, bool) {
	if !r.hasData {
		r.typ = ""
		return Event{}, false
	}
	ev := Event{Type: r.typ, ID: r.id, HasID: r.hasID, Retry: r.retry}
	switch {
	case !r.lend:
		ev.Data = string(r.data)
	case len(r.data) > 0:
		ev.Data = unsafe.String(unsafe.SliceData(r.data), len(r.data))
		r.lent = len(r.data)
	}
	r.data, r.hasData, r.typ, r.hasID, r.id, r.retry = r.data[:0], false, "", false, "", 0
	if cap(r.data) > 64<<10 {
		r.data, r.lent = nil, 0 // a lent event keeps the array it reads
	}
	return ev, true
}

// readLine returns the next line without its terminator. The slice is valid
// until the next call.
func (r *Reader) readLine() ([]byte, error) {
	if !r.partial {
		r.line = r.line[:0]
	}
	r.partial = false
	for {
		if r.off == r.end {
			if r.err != nil {
				// A final line without terminator ends the stream, and
				// with it any event being built.
				r.release()
				return nil, r.err
			}
			if err := r.fill(); err != nil {
				r.partial = true
				return nil, err
			}
			continue
		}
		chunk := r.buf[r.off:r.end]
		if !r.bom {
			if len(chunk) < 3 && r.err == nil && bytes.HasPrefix([]byte("\xef\xbb\xbf"), chunk) {
				if err := r.fill(); err != nil {
					r.partial = true
					return nil, err
				}
				continue
			}
			r.bom = true
			if bytes.HasPrefix(chunk, []byte("\xef\xbb\xbf")) {
				r.off += 3
				continue
			}
		}
		if r.skipLF {
			r.skipLF = false
			if chunk[0] == '\n' {
				r.off++
				continue
			}
		}
		i := lineEnd(chunk)
		if i < 0 {
			if len(r.line)+len(chunk) > r.lim.MaxLine {
				return nil, ErrLineTooLong
			}
			r.line = append(r.line, chunk...)
			r.off = r.end
			continue
		}
		if len(r.line)+i > r.lim.MaxLine {
			return nil, ErrLineTooLong
		}
		r.skipLF = chunk[i] == '\r'
		r.off += i + 1
		if len(r.line) == 0 {
			return chunk[:i], nil
		}
		r.line = append(r.line, chunk[:i]...)
		return r.line, nil
	}
}

// lineEnd returns the index of the first CR or LF in b, or -1. Two
// IndexByte scans beat IndexAny's byte loop on event-sized lines.
func lineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	end := b
	if i >= 0 {
		end = b[:i]
	}
	if j := bytes.IndexByte(end, '\r'); j >= 0 {
		return j
	}
	return i
}

// fill reads more input. It returns only ErrWouldBlock (when the source
// declined to wait and gave nothing); other errors are kept in r.err.
// lineEndString is lineEnd for a string.
func lineEndString(s string) int {
	i := strings.IndexByte(s, '\n')
	end := s
	if i >= 0 {
		end = s[:i]
	}
	if j := strings.IndexByte(end, '\r'); j >= 0 {
		return j
	}
	return i
}

func (r *Reader) fill() error {
	var n, room int
	var err error
	if r.off == r.end && r.drained {
		// Nothing is at hand: wait without holding the input buffer.
		r.release()
		r.buf, r.off, r.end = r.one[:], 0, 0
		room = 1
		n, err = r.r.Read(r.buf)
	} else {
		if r.big == nil {
			r.big = bufs.Get().(*[]byte)
		}
		big := *r.big
		r.end = copy(big, r.buf[r.off:r.end])
		r.buf, r.off = big, 0
		room = len(r.buf) - r.end
		n, err = r.r.Read(r.buf[r.end:])
	}
	r.end += n
	if n == 0 && errors.Is(err, ErrWouldBlock) {
		return ErrWouldBlock
	}
	r.drained = n < room
	if err != nil && !errors.Is(err, ErrWouldBlock) {
		r.err = err
		if r.off == r.end {
			r.release() // nothing more will be read
		}
	}
	return nil
}

// release gives the input buffer back to the pool.
func (r *Reader) release() {
	if r.big != nil {
		bufs.Put(r.big)
		r.big = nil
		r.buf, r.off, r.end = nil, 0, 0
	}
}

// Writer writes events with valid framing.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer to w. Each event is written with one Write call.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// ErrInvalidField is returned for an event type or id containing a line
// break (or, for ids, NUL), which cannot be framed.
var ErrInvalidField = errors.New("sse: field contains a line break")

// WriteEvent writes e. Data is split on CRLF, LF and CR into data lines, so
// any text round-trips through a Reader (except that CRLF and CR in data
// come back as LF). An event with empty Data is written with one empty data
// line, which a standard reader does not dispatch.
func (w *Writer) WriteEvent(e Event) error {
	if strings.ContainsAny(e.Type, "\r\n") || strings.ContainsAny(e.ID, "\r\n\x00") {
		return ErrInvalidField
	}
	b := w.buf[:0]
	if e.Type != "" {
		b = append(b, "event: "...)
		b = append(b, e.Type...)
		b = append(b, '\n')
	}
	if e.HasID {
		b = append(b, "id: "...)
		b = append(b, e.ID...)
		b = append(b, '\n')
	}
	if e.Retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, int64(e.Retry), 10)
		b = append(b, '\n')
	}
	b = appendLines(b, "data", e.Data)
	b = append(b, '\n')
	w.buf = b
	_, err := w.w.Write(b)
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	}
	if err != nil {
		return fmt.Errorf("sse: write: %w", err)
	}
	return nil
}

// WriteComment writes text as comment lines (": text"); an empty text
// writes ":" alone. Comments keep idle connections open.
func (w *Writer) WriteComment(text string) error {
	b := appendLines(w.buf[:0], "", text)
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("sse: write: %w", err)
	}
	return nil
}

// appendLines appends "field: line\n" for each line of s ("field" empty:
// comment lines).
func appendLines(b []byte, field, s string) []byte {
	for {
		i := lineEndString(s)
		line := s
		if i >= 0 {
			line = s[:i]
		}
		b = append(b, field...)
		b = append(b, ':')
		if line != "" {
			b = append(b, ' ')
			b = append(b, line...)
		}
		b = append(b, '\n')
		if i < 0 {
			return b
		}
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}
