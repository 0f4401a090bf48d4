package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// streamBody relays a Server-Sent Events answer one event at a time, so
// nothing but the current event is ever held in memory. On the way it
// reads usage, drops the usage-only chunk the proxy asked for on the
// client's behalf, masks, and writes the audit event before the terminal
// event ([DONE], response.completed, ...) reaches the client. A stream the
// upstream cuts short ends with an error event the SDKs raise, then a clean
// end of stream, never a hang.
type streamBody struct {
	p        *Proxy
	c        *call
	ctx      context.Context
	src      io.ReadCloser
	rd       *bufio.Reader
	ev       []byte // the raw event being read
	out      []byte // bytes for the client
	off      int
	done     bool
	finished bool // audit written
}

func newStreamBody(ctx context.Context, p *Proxy, c *call, src io.ReadCloser) *streamBody {
	return &streamBody{p: p, c: c, ctx: ctx, src: src, rd: bufio.NewReaderSize(src, 16<<10)}
}

func (s *streamBody) Read(b []byte) (int, error) {
	for s.off >= len(s.out) {
		if s.done {
			return 0, io.EOF
		}
		s.out, s.off = s.out[:0], 0
		ev, err := s.readEvent()
		if len(ev) > 0 {
			s.handle(ev)
		}
		if err != nil {
			s.done = true
			if !s.finished {
				s.interrupted(err)
			}
		}
	}
	n := copy(b, s.out[s.off:])
	s.off += n
	return n, nil
}

// Close ends the upstream read. A stream closed before its end means the
// client went away; begin's deferred audit records it.
func (s *streamBody) Close() error {
	if !s.finished && !s.done {
		s.c.status, s.c.errDetail = statusClientClosed, "client went away mid-stream"
	}
	return s.src.Close()
}

// readEvent returns the next raw event, blank line included. Lines may be
// of any length (a response.completed event carries the whole response).
func (s *streamBody) readEvent() ([]byte, error) {
	s.ev = s.ev[:0]
	for {
		line, err := s.rd.ReadSlice('\n')
		s.ev = append(s.ev, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return s.ev, err
		}
		if isBlank(line) && !isBlank(s.ev) {
			return s.ev, nil
		}
		if isBlank(s.ev) { // stray blank lines between events
			s.ev = s.ev[:0]
		}
	}
}

func isBlank(b []byte) bool { return len(bytes.TrimRight(b, "\r\n")) == 0 }

// sseFields splits a raw event into its event name and joined data.
func sseFields(ev []byte) (name string, data []byte) {
	for len(ev) > 0 {
		var line []byte
		line, ev, _ = bytes.Cut(ev, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	return name, data
}

// streamChunk holds the fields of a streamed event the proxy acts on.
type streamChunk struct {
	Type     string            `json:"type"`
	Usage    *usageJSON        `json:"usage"`
	Choices  []json.RawMessage `json:"choices"`
	Response *struct {
		Usage *usageJSON `json:"usage"`
	} `json:"response"`
	Error json.RawMessage `json:"error"`
}

// terminal response event types of the Responses API.
func terminalType(t string) bool {
	switch t {
	case "response.completed", "response.failed", "response.incomplete", "error":
		return true
	}
	return false
}

// handle processes one event and queues what the client gets.
func (s *streamBody) handle(ev []byte) {
	name, data := sseFields(ev)
	if bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")) {
		s.finish(ev)
		return
	}
	if !s.interesting(name, data) {
		s.out = append(s.out, ev...)
		return
	}
	var ch streamChunk
	if json.Unmarshal(data, &ch) != nil {
		s.out = append(s.out, ev...)
		return
	}
	if ch.Usage != nil {
		s.c.usage, s.c.hasUsage = ch.Usage.usage(), true
	}
	if ch.Response != nil && ch.Response.Usage != nil {
		s.c.usage, s.c.hasUsage = ch.Response.Usage.usage(), true
	}
	if ch.Usage != nil && len(ch.Choices) == 0 && s.c.stripUsage {
		return // the usage-only chunk the client did not ask for
	}
	if len(ch.Error) > 0 && !bytes.Equal(ch.Error, []byte("null")) {
		s.c.errDetail = "upstream sent an error event"
		s.finish(ev)
		return
	}
	if terminalType(ch.Type) || terminalType(name) {
		if ch.Type == "response.failed" || ch.Type == "error" {
			s.c.errDetail = "upstream stream ended with " + ch.Type
		}
		s.finish(ev)
		return
	}
	s.out = append(s.out, ev...)
}

// interesting is a cheap filter for events that may carry usage, an error
// or the end of a Responses stream; the rest are relayed without decoding.
func (s *streamBody) interesting(name string, data []byte) bool {
	if terminalType(name) {
		return true
	}
	for _, marker := range [][]byte{[]byte(`"usage":{`), []byte(`"usage": {`), []byte(`"error"`), []byte(`"response.completed"`),
		[]byte(`"response.failed"`), []byte(`"response.incomplete"`)} {
		if bytes.Contains(data, marker) {
			return true
		}
	}
	return false
}

// finish writes the audit event, then queues the terminal event. If the
// event cannot be recorded, the client gets an error event instead of the
// normal end.
func (s *streamBody) finish(terminal []byte) {
	if s.finished {
		s.out = append(s.out, terminal...)
		return
	}
	s.finished = true
	s.p.countUsage(s.c)
	if err := s.p.audit(s.ctx, s.c); err != nil {
		s.out = append(s.out, errorEvent(s.p.auditError(err))...)
		s.done = true
		return
	}
	s.out = append(s.out, terminal...)
}

// interrupted ends a stream the upstream cut short (or closed without its
// terminal event): the trail records the failure and the client gets an
// error event followed by a clean end of stream.
func (s *streamBody) interrupted(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("upstream closed the stream before its end")
	}
	ae := errUpstream(http.StatusBadGateway, CodeStreamInterrupted, fmt.Sprintf(
		"Upstream %q cut the stream short; the answer is incomplete. Retry the request.", s.c.up.name), err)
	s.c.err = ae
	s.c.errDetail = "upstream stream interrupted"
	s.finished = true
	s.p.countUsage(s.c)
	_ = s.p.audit(s.ctx, s.c) // a failure is logged; the client gets the error event either way
	s.out = append(s.out, errorEvent(ae)...)
}

// errorEvent renders e as an SSE event. The OpenAI SDKs stop a stream and
// raise when an event's data holds an "error" object.
func errorEvent(e *apiError) []byte {
	b := []byte("event: error\ndata: ")
	b = append(b, e.body()...)
	return append(b, "\n\n"...)
}
