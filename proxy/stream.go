package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/sse"
)

// streamBody relays a Server-Sent Events answer of a model call as it
// arrives, checking it is UTF-8 (utf8Body); nothing but the current event (and text the masker holds back)
// is ever buffered.
//
// A payload.Relay (masking, usage, summary) does the work one event per
// Step and writes what it produces into the body; relayStream pulls the
// body. Each chunk steps the relay until it is about to wait for the
// upstream (its source then answers sse.ErrWouldBlock instead of
// waiting) or has ended, cuts what it wrote into events and hands the
// complete ones to relayStream, which flushes them to the client at once:
// every event leaves as soon as nothing more is at hand, events that
// arrived together leave in one write, and no goroutine is spent per
// stream. On the way streamBody drops the usage-only chunk the proxy asked
// for on the client's behalf, and holds back the terminal event ([DONE],
// response.completed, response.failed, response.incomplete, an error
// event) until the upstream stream has ended and the audit event is
// written: the trail holds the call before the client sees the end of it.
// A stream the upstream cuts short (or closes without its terminal event)
// ends with an error event the SDKs raise, then a clean end of stream.
type streamBody struct {
	p   *Proxy
	c   *call
	ctx context.Context
	src io.ReadCloser

	text    utf8Body // src, checked to be UTF-8 without NULs
	relay   *payload.Relay
	waiting bool           // the relay's source declined to wait: out may go
	sent    bool           // out went to the client once
	result  payload.Result // set when the relay has ended
	copyErr error

	pending  []byte       // the start of an event not yet complete
	scanned  int          // pending[:scanned] holds no event end
	out      readyEvents  // complete events for the client
	end      bytes.Buffer // the terminal event and what follows, capped
	endCount int          // events after the terminal one
	terminal bool         // the terminal event was seen
	overflow error        // an event grew past maxStreamEvent, or too much followed the terminal event
	finished bool         // the audit event is written (or the call abandoned)
	gone     bool         // it ended because the client went away

	tools   *toolStream // the tool-call firewall (toolstream.go), nil when no Judge applies
	toolErr *apiError   // the firewall ended the stream
	// limit is the token limit the stream said it reached (limitEvent),
	// "" until then; limitItem: said only by a call's item "incomplete".
	limit     string
	limitItem bool

	// Responses: the last sequence_number the client was sent (outSeq,
	// when seqOut), and whether any event went to it (sentAny); pamctl's
	// own error event is numbered on from them (endEvent).
	outSeq  int64
	seqOut  bool
	sentAny bool
}

// Bounds of a relayed stream (docs/performance.md). An event (a line
// without its blank line, when the relay copies bytes) may grow to
// maxStreamEvent; after the terminal event at most maxAfterTerminal
// events and maxAfterTerminalBytes are kept, and the stream then ends.
const (
	maxStreamEvent        = sse.DefaultMaxEvent + 64<<10
	maxAfterTerminal      = 8
	maxAfterTerminalBytes = 64 << 10
	// bytesPerToken estimates tokens of text relayed when the upstream
	// sent no usage (a client that left early, an upstream that never
	// reports it): OpenAI's rule of thumb for English.
	bytesPerToken = 4
)

// writerFunc adapts a function to io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// readerFunc adapts a function to io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func newStreamBody(ctx context.Context, p *Proxy, c *call, src io.ReadCloser) *streamBody {
	s := &streamBody{p: p, c: c, ctx: ctx, src: src}
	s.text.src = src
	w := writerFunc(func(b []byte) (int, error) {
		if s.relay != nil && len(s.pending) == 0 && s.tools == nil {
			if k := s.relay.WritingKind(); k != payload.EventUnknown && wholeEvent(b) {
				// One event the relay parsed and classified: not
				// parsed again.
				s.relayKnown(b, k)
				return len(b), nil
			}
		}
		s.feed(b)
		return len(b), nil
	})
	// Before the relay waits for more of the upstream's answer, the events
	// it has finished go to the client.
	r := readerFunc(func(b []byte) (int, error) {
		if s.out.Len() > 0 || s.overflow != nil || s.tools.busy() {
			s.waiting = true
			return 0, sse.ErrWouldBlock
		}
		return s.text.Read(b)
	})
	relay, err := payload.NewScrubbedRelay(w, nil, r, c.path, c.ResponseMask, c.keys)
	if err != nil {
		s.result, s.copyErr = payload.Result{Counts: mask.Counts{}}, err
		s.finish()
		return s
	}
	s.relay = relay
	if j := c.tools; c.kind == epChat || c.kind == epResponses {
		if j == nil {
			j = p.toolJudge(c)
		}
		if j != nil {
			s.tools = newToolStream(ctx, j, c.kind == epChat, s.relayEvent)
			s.tools.buf.chatChoices = max(c.choices, 1)
		}
	}
	return s
}

func (s *streamBody) Read(b []byte) (int, error) {
	if err := s.ready(); err != nil {
		return 0, err
	}
	n, _ := s.out.Read(b)
	s.out.release()
	return n, nil
}

// chunk returns every byte ready for the client, without copying: valid
// until the next call (scrubBody and relayStream read a stream this way,
// so a thousand open streams hold no read buffer of their own).
func (s *streamBody) chunk() ([]byte, error) {
	s.out.release() // what the last call lent is written
	if err := s.ready(); err != nil {
		return nil, err
	}
	return s.out.take(), nil
}

// ready steps the relay until out holds what should go to the client now,
// or the stream has ended (io.EOF).
func (s *streamBody) ready() error {
	// Events go out when the relay would wait for the upstream, so one
	// write carries every event one socket read brought, except the
	// first, which goes alone as soon as it is ready: the client's time
	// to first byte is the upstream's plus one event's work, not a whole
	// read's (docs/performance.md).
	for s.out.Len() == 0 || !s.waiting && !s.finished && s.sent {
		if s.finished {
			if s.gone {
				// Not an end: a client that only half-closed its
				// connection may still read, and takes the chunked
				// answer's end for the stream's.
				return errClientGone
			}
			return io.EOF
		}
		s.waiting = false
		if s.overflow != nil {
			// Nothing more is read: the stream ends here.
			s.result, s.copyErr = s.relay.Result()
			if s.copyErr == nil && !s.terminal {
				s.copyErr = s.overflow
			}
			s.finish()
			continue
		}
		if s.tools.busy() {
			if s.out.Len() > 0 {
				break // what is ready goes first
			}
			s.awaitVerdict()
			continue
		}
		if !s.relay.Step() {
			s.result, s.copyErr = s.relay.Result()
			s.finish()
		}
	}
	s.waiting = false
	s.sent = true
	return nil
}

// feed cuts what the relay wrote (whole events or comment lines when
// parsing, raw upstream bytes otherwise) into events. Comment lines
// (keep-alives) at an event boundary go out at once. An incomplete event
// waits in pending for the rest, scanned once (never again from its start);
// one still incomplete when the stream ends is dropped, as SSE clients do,
// and one that grows past maxStreamEvent ends the stream.
func (s *streamBody) feed(b []byte) {
	if s.overflow != nil {
		return
	}
	buf := b // usually whole events: cut them where they are
	from := 0
	if len(s.pending) > 0 {
		buf = append(s.pending, b...)
		from = s.scanned
	}
	off := 0
	for off < len(buf) {
		if buf[off] == ':' {
			// A comment line at an event boundary: relay it now.
			k := bytes.IndexByte(buf[max(off, from):], '\n')
			if k < 0 {
				break
			}
			end := max(off, from) + k + 1
			s.comment(buf[off:end])
			off = end
			from = max(from, off)
			continue
		}
		ev, n := cutEvent(buf[off:], max(from-off, 0))
		if n == 0 {
			break
		}
		s.handle(ev)
		off += n
		from = max(from, off)
	}
	rest := buf[off:]
	if len(rest) > maxStreamEvent {
		s.overflow = fmt.Errorf("upstream sent an event over %d bytes", maxStreamEvent)
		s.pending, s.scanned = nil, 0
		return
	}
	// The rest holds no event end up to its last byte but two (a CRLF
	// blank line may straddle the next write).
	s.scanned = max(len(rest)-3, 0)
	s.pending = append(s.pending[:0], rest...)
	if cap(s.pending) > 64<<10 && len(s.pending) < 4<<10 {
		s.pending = bytes.Clone(s.pending) // let a large event's array go
	}
}

// comment relays a comment line, unless the stream is past its terminal
// event.
func (s *streamBody) comment(line []byte) {
	if s.terminal {
		s.after(line)
		return
	}
	s.out.Write(line)
}

// cutEvent returns the first complete event of b (up to and including the
// blank line that ends it, LF or CRLF line ends) and its length, or 0.
// b[:from] is known to hold no event end but in its last bytes.
func cutEvent(b []byte, from int) ([]byte, int) {
	for i := max(from-2, 0); i < len(b); i++ {
		k := bytes.IndexByte(b[i:], '\n')
		if k < 0 {
			break
		}
		i += k
		j := i + 1
		if j < len(b) && b[j] == '\r' {
			j++
		}
		if j < len(b) && b[j] == '\n' {
			return b[:j+1], j + 1
		}
	}
	return nil, 0
}

// handle passes one raw event to the tool-call firewall, if any, which
// passes on what the client may see to relayEvent.
func (s *streamBody) handle(ev []byte) {
	if s.tools != nil {
		if s.limit == "" || s.limitItem {
			// Before the firewall reads it: a call it then finds cut
			// short was cut by the limit (finish).
			if l, item := limitEvent(ev); l != "" {
				s.limit, s.limitItem = l, item
			}
		}
		s.tools.buf.push(ev)
		s.checkTools(nil)
		return
	}
	s.relayEvent(ev)
}

// wholeEvent reports whether b is one event ending in its blank line, as
// the relay's sse.Writer writes it.
func wholeEvent(b []byte) bool {
	return len(b) >= 2 && b[len(b)-1] == '\n' && b[len(b)-2] == '\n' && b[0] != ':'
}

// relayKnown is relayEvent for an event the relay classified.
func (s *streamBody) relayKnown(ev []byte, k payload.EventKind) {
	switch {
	case s.overflow != nil:
	case s.terminal:
		s.relayEvent(ev) // what follows the end: kept, bounded (after)
	case k == payload.EventTerminal:
		s.terminal = true
		s.end.Write(ev)
	default:
		s.toClient(ev)
	}
}

// relayEvent queues one raw event for the client, holds it, or drops it.
func (s *streamBody) relayEvent(ev []byte) {
	if data, ok := plainData(ev); ok && !s.terminal {
		// The usual event, one data line: decide without copying it.
		if !s.c.stripUsage || !mayBeUsage(data) {
			if !mayBeTerminal(data) {
				s.toClient(ev)
				return
			}
		}
	}
	name, data := sseFields(ev)
	if s.c.stripUsage && usageOnlyChunk(data) {
		return // the usage chunk the client did not ask for
	}
	if s.terminal {
		s.after(ev)
		return
	}
	if isTerminal(name, data) {
		s.terminal = true
		s.end.Write(ev)
		return
	}
	s.toClient(ev)
}

// toClient queues an event for the client, noting the sequence_number
// of a Responses event (endEvent numbers on from it).
func (s *streamBody) toClient(ev []byte) {
	if s.c.kind == epResponses {
		s.sentAny = true
		if n, ok := eventSeq(ev); ok {
			s.outSeq, s.seqOut = n, true
		}
	}
	s.out.Write(ev)
}

// eventSeq reads a raw event's top-level sequence_number, an integer.
// Usually it is the data's last member, read without decoding (when the
// last match is a key: after '{' or ','); else the data's top-level
// members are walked.
func eventSeq(ev []byte) (int64, bool) {
	key := []byte(`"sequence_number"`)
	i := bytes.LastIndex(ev, key)
	if i < 0 {
		return 0, false
	}
	// A key, not the end of one: in JSON only '{' or ',' (and blanks)
	// comes before a member's opening quote ("x \"sequence_number" is
	// another member's key, ending in an escaped quote and that text).
	p := i - 1
	for p >= 0 && (ev[p] == ' ' || ev[p] == '\t') {
		p--
	}
	key1 := p >= 0 && (ev[p] == ',' || ev[p] == '{')
	j := i + len(key)
	for j < len(ev) && (ev[j] == ' ' || ev[j] == '\t') {
		j++
	}
	if key1 && j < len(ev) && ev[j] == ':' {
		j++
		for j < len(ev) && (ev[j] == ' ' || ev[j] == '\t') {
			j++
		}
		k := j
		for k < len(ev) && '0' <= ev[k] && ev[k] <= '9' {
			k++
		}
		rest := bytes.TrimLeft(ev[k:], " \t")
		if k > j && len(rest) > 0 && rest[0] == '}' && len(bytes.Trim(rest[1:], " \t\r\n")) == 0 {
			// The last member of the last data line's object: top level.
			if n, err := strconv.ParseInt(string(ev[j:k]), 10, 64); err == nil {
				return n, true
			}
		}
	}
	var n int64
	found := false
	visit := func(name, v string) {
		if name == "sequence_number" {
			m, err := strconv.ParseInt(v, 10, 64)
			n, found = m, err == nil
		}
	}
	if data, ok := oneDataLine(ev); ok {
		// The usual event (an event: line and one data: line): walked
		// where it lies, without copying.
		objectMembers(data, visit)
		return n, found
	}
	_, data := sseFields(ev)
	topMembers(data, visit)
	return n, found
}

// oneDataLine returns the value of a raw event's only data line, when it
// has exactly one (other fields aside), without copying it.
func oneDataLine(ev []byte) ([]byte, bool) {
	var data []byte
	count := 0
	for len(ev) > 0 {
		var line []byte
		line, ev, _ = bytes.Cut(ev, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, false // a lone CR ends a line too: the general path
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimPrefix(v, []byte(" "))
			count++
		}
	}
	return data, count == 1
}

// after keeps what follows the terminal event, up to a bound; past it the
// stream ends (an upstream may not keep a finished stream busy forever).
func (s *streamBody) after(ev []byte) {
	s.endCount++
	if s.endCount > maxAfterTerminal || s.end.Len()+len(ev) > maxAfterTerminalBytes {
		s.overflow = errors.New("upstream kept sending after the end of its stream")
		return
	}
	s.end.Write(ev)
}

// sseFields returns a raw event's name and its data lines joined by "\n".
func sseFields(ev []byte) (name, data string) {
	var d []string
	for len(ev) > 0 {
		var line []byte
		line, ev, _ = bytes.Cut(ev, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			d = append(d, string(value))
		}
	}
	return name, strings.Join(d, "\n")
}

// plainData returns the data of an event that is a single "data:" line
// (LF or CRLF, no other field), without copying it.
func plainData(ev []byte) ([]byte, bool) {
	line, ok := bytes.CutPrefix(ev, []byte("data:"))
	if !ok {
		return nil, false
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		return nil, false
	}
	return bytes.TrimPrefix(line, []byte(" ")), true
}

// mayBeUsage is usageOnlyChunk's first test: data that fails it is no
// usage chunk.
func mayBeUsage(data []byte) bool {
	return bytes.Contains(data, []byte(`"usage":{`)) || bytes.Contains(data, []byte(`"usage": {`))
}

// mayBeTerminal is isTerminal's first test for an unnamed event: data
// that fails it does not end the stream. Text with a \u escape may spell
// either name so (respons\u0065.completed is response.completed to every
// client): it goes to isTerminal, which decodes.
func mayBeTerminal(data []byte) bool {
	return bytes.Contains(data, []byte(`[DONE]`)) || bytes.Contains(data, []byte(`"error"`)) || bytes.Contains(data, []byte(`"response.`)) ||
		bytes.Contains(data, []byte(`\u`))
}

// usageOnlyChunk reports whether data is a chat chunk with usage and no
// choices, as sent last when stream_options.include_usage is set.
func usageOnlyChunk(data string) bool {
	if !strings.Contains(data, `"usage":{`) && !strings.Contains(data, `"usage": {`) { // mayBeUsage, without a copy
		return false
	}
	// Read as encoding/json reads it into a struct with fields Choices
	// (an array) and Usage (raw): names matched in any case, the last one
	// given wins, a value of the wrong type fails.
	choices, usage, bad := 0, "", false
	ok := topMembers(data, func(name, v string) {
		switch {
		case strings.EqualFold(name, "choices"):
			switch v[0] {
			case '[':
				choices = len(strings.TrimSpace(v[1 : len(v)-1]))
			case 'n':
				choices = 0
			default:
				bad = true
			}
		case strings.EqualFold(name, "usage"):
			usage = v
		}
	})
	return ok && !bad && choices == 0 && usage != "" && usage != "null"
}

// isTerminal reports whether an event ends its stream.
func isTerminal(name, data string) bool {
	data = strings.TrimSpace(data)
	if data == "[DONE]" || terminalType(name) {
		return true
	}
	if !strings.Contains(data, `"error"`) && !strings.Contains(data, `"response.`) && !strings.Contains(data, `\u`) {
		return false // as mayBeTerminal
	}
	// Read as encoding/json reads it into a struct with fields Type (a
	// string; null leaves it as it was) and Error (raw): see
	// usageOnlyChunk.
	typ, errV, bad := "", "", false
	ok := topMembers(data, func(name, v string) {
		switch {
		case strings.EqualFold(name, "type"):
			switch v[0] {
			case '"':
				typ = unquoteJSON(v)
			case 'n':
			default:
				bad = true
			}
		case strings.EqualFold(name, "error"):
			errV = v
		}
	})
	if !ok || bad {
		return false
	}
	return terminalType(typ) || (typ == "" && errV != "" && errV != "null")
}

// terminalType names the events that end a Responses stream.
func terminalType(t string) bool { return payload.TerminalType(t) }

// finish ends the stream once the relay has ended: it writes the audit
// event, then releases the terminal event, or an error event if the stream
// was cut short or could not be recorded.
func (s *streamBody) finish() {
	s.finished = true
	s.pending = nil
	// A chunk the relay refused as text after its end may begin tool
	// calls (a second batch at an index already relayed): the firewall
	// reads it, showing nothing, so that each is refused and recorded.
	var after *payload.AfterEndError
	if s.tools != nil && !s.tools.busy() && s.toolErr == nil && errors.As(s.copyErr, &after) {
		s.tools.buf.emit = func([]byte) {}
		s.tools.buf.push(sseEvent("", []byte(after.Data)))
		s.checkTools(nil)
	}
	// Calls removed unjudged that the stream never showed, and calls it
	// began and ends without a verdict: recorded before the call's own
	// event.
	if ae := s.tools.recordUnjudged(); ae != nil && s.toolErr == nil {
		s.toolErr = ae
	}
	s.tools.stop() // what it still holds is never shown
	if s.overflow != nil || s.copyErr != nil {
		_ = s.src.Close() // stop reading; the stream ends here
	}
	s.c.release()
	s.takeResult()
	switch {
	case s.ctx.Err() != nil:
		s.gone = true
		s.clientGone()
	case s.toolErr != nil:
		if cut := streamCut(s.toolErr, s.limit, s.limitItem); cut != nil {
			s.toolErr = errTruncatedCall(cut)
		}
		s.c.err, s.c.errDetail = s.toolErr, "tool call withheld: "+s.toolErr.Code
		_ = s.p.audit(s.ctx, s.c) // a failure is logged; the client gets the error either way
		s.out.Write(s.endEvent(s.toolErr))
	case !s.terminal || s.copyErr != nil:
		cause := s.copyErr
		if cause == nil {
			cause = errors.New("upstream closed the stream before its end")
		}
		end := streamEndOf(cause)
		ae := errUpstream(http.StatusBadGateway, end.code, fmt.Sprintf(end.message, s.c.up.name), cause)
		s.c.err, s.c.errDetail = ae, end.detail
		_ = s.p.audit(s.ctx, s.c) // a failure is logged; the client gets the error either way
		s.out.Write(s.endEvent(ae))
	default:
		if err := s.p.audit(s.ctx, s.c); err != nil {
			s.out.Write(s.endEvent(s.p.auditError(err)))
			return
		}
		s.out.Write(s.end.Bytes())
	}
}

// streamEnd is what the client is told, and the audit records, when a
// stream ends before its end; message has a %q for the upstream's name.
type streamEnd struct {
	cause                 error
	code, message, detail string
}

// streamEnds are the causes told apart; any other is an interruption.
var streamEnds = []streamEnd{
	{errUpstreamEncoding, CodeUpstreamEncoding,
		"Upstream %q streamed text that is not UTF-8 (or holds NUL bytes); the proxy inspects only UTF-8, so the rest of the answer is withheld. Retry the request.",
		"upstream stream not UTF-8"},
	{payload.ErrUnreadableJSON, CodeUpstreamError,
		"Upstream %q streamed an event that is JSON the proxy cannot read as every client does (NaN, a byte order mark, nesting too deep, a lone UTF-16 surrogate escape, a member spelled in another letter case than one the proxy reads, an output or content index that is not a plain integer) or not a JSON object; it could not be masked, so the rest of the answer is withheld. Retry the request.",
		"upstream stream event is JSON the proxy cannot read"},
	{payload.ErrSplitOutput, CodeUpstreamError,
		"Upstream %q streamed the text of one output under two item ids (or with and without one), or one item at two outputs; clients join it by either, so it could not be masked as they read it, and the rest of the answer is withheld. Retry the request.",
		"upstream streamed one output under two items"},
	{payload.ErrTextAfterEnd, CodeUpstreamError,
		"Upstream %q streamed more text for a choice or an output after it had ended it; that text could not be masked with the rest, so the rest of the answer is withheld. Retry the request.",
		"upstream streamed text after its end"},
}

func streamEndOf(cause error) streamEnd {
	for _, e := range streamEnds {
		if errors.Is(cause, e.cause) {
			return e
		}
	}
	return streamEnd{cause, CodeStreamInterrupted, "Upstream %q cut the stream short; the answer is incomplete. Retry the request.", "upstream stream interrupted"}
}

// clientGone records a stream the client abandoned; the upstream call is
// canceled with the request's context.
func (s *streamBody) clientGone() {
	s.c.status, s.c.errDetail = statusClientClosed, "client went away mid-stream"
	_ = s.p.audit(s.ctx, s.c) // a failure is logged; nobody is left to tell
}

// takeResult copies the relay's findings into the call.
func (s *streamBody) takeResult() {
	r := s.result
	if r.HasUsage {
		s.c.usage = tokenUsage{Input: r.Usage.InputTokens, Output: r.Usage.OutputTokens, Total: r.Usage.TotalTokens}
		s.c.hasUsage = true
	}
	if !r.HasUsage && r.TextBytes > 0 {
		// No usage came (the client left before it, or the upstream never
		// sends it): charge an estimate of what was relayed.
		s.c.usage = tokenUsage{Input: int64(s.c.promptLen) / bytesPerToken, Output: (r.TextBytes + bytesPerToken - 1) / bytesPerToken}
		s.c.usage.Total = s.c.usage.Input + s.c.usage.Output
		s.c.hasUsage, s.c.usageEstimated = true, true
	}
	s.c.summary = r.Summary
	if r.Counts.Total() > 0 {
		s.c.maskedOut = r.Counts
	}
	s.p.countUsage(s.c)
}

// Close ends the relay. Closed before its end, the stream was abandoned by
// the client (relayStream could not write to it): the relay reads on,
// relaying to nobody, until the upstream's usage arrives or the stream
// ends, for at most drainAfterClient (the upstream call's context is
// canceled then); what was relayed is charged, and the trail records the
// call as abandoned.
func (s *streamBody) Close() error {
	_ = s.tools.recordUnjudged() // the client left: nobody to tell of a failure
	s.tools.stop()
	if !s.finished && s.relay != nil {
		s.drain()
	}
	err := s.src.Close()
	if !s.finished {
		s.finished = true
		if s.relay != nil {
			s.result, _ = s.relay.Result()
		}
		s.c.release()
		s.takeResult()
		s.clientGone()
	}
	s.out.Reset() // nobody reads on: its buffer goes to the next stream
	s.out.release()
	return err
}

// drain steps the relay to nobody until it ends (the upstream stream ended
// or its context was canceled) or the usage is known.
func (s *streamBody) drain() {
	for s.overflow == nil {
		s.out.Reset()
		s.end.Reset()
		s.waiting = false
		if !s.relay.Step() || s.relay.HasUsage() {
			return
		}
	}
}

// chunkBody is a body that lends out what it has ready without copying
// (streamBody, and scrubBody over one).
type chunkBody interface {
	io.ReadCloser
	readyChunks
}

// takenStream is a stream's answer, taken from ReverseProxy by
// modifyResponse (which answers errStreamTaken, so ReverseProxy writes
// nothing) for relayStream to write.
type takenStream struct {
	res  *http.Response // status, headers and trailers; its Body is the relay's now
	body chunkBody
}

// headerFlushDelay is how long a stream's headers wait for its first
// event to leave with it.
const headerFlushDelay = 5 * time.Millisecond

// errClientGone ends a stream whose client went away (its request's
// context ended): relayStream aborts the connection.
var errClientGone = errors.New("proxy: the client went away mid-stream")

// errStreamTaken tells ReverseProxy's error handler that modifyResponse
// took the answer over: nothing failed.
var errStreamTaken = errors.New("proxy: the stream is relayed by pamctl")

// relayStream writes a stream to the client: the upstream's headers (at
// once, as the upstream sent them), each chunk as the relay readies it,
// flushed, then the trailers. ReverseProxy would copy every chunk once
// more, through a buffer each stream holds for as long as it stays open
// (4 KiB of the 40 KiB an open stream holds), and flush it through a
// latency writer that starts a timer goroutine per answer.
func (p *Proxy) relayStream(w http.ResponseWriter, c *call) {
	t := c.taken
	c.taken = nil
	res := t.res
	h := w.Header()
	for k, vv := range res.Header {
		if len(h[k]) == 0 {
			h[k] = vv // the upstream's answer is not read again
		} else {
			h[k] = append(h[k], vv...)
		}
	}
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		h.Add("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	flush := func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	// The headers leave with the first event, in one write, or alone once
	// headerFlushDelay has passed without one (an upstream thinking before
	// its first token): flushing them at once cost every stream a write
	// of its own, and the client a wake-up, before its first event.
	var mu sync.Mutex // w is the handler's; the timer flushes it too
	sent := false     // the headers are out, or the handler is done with w
	headers := time.AfterFunc(headerFlushDelay, func() {
		mu.Lock()
		defer mu.Unlock()
		if !sent {
			sent = true
			_ = flush() // a client gone: the next write finds out
		}
	})
	release := func() {
		headers.Stop()
		mu.Lock() // a flush under way ends before w is let go
		sent = true
		mu.Unlock()
	}
	defer release()
	var err error
	for err == nil {
		var b []byte
		if b, err = t.body.chunk(); len(b) > 0 {
			mu.Lock()
			sent = true
			if _, werr := w.Write(b); werr != nil {
				err = werr
			} else if ferr := flush(); ferr != nil {
				err = ferr
			}
			mu.Unlock()
		}
	}
	// Closed before its end, the relay drains the upstream and records
	// the call as abandoned (streamBody.Close).
	_ = t.body.Close()
	if err != io.EOF {
		// The client is gone or a write timed out: end the connection
		// without the last chunk, so no client takes a cut stream for a
		// whole one (as ReverseProxy does).
		panic(http.ErrAbortHandler)
	}
	// Scrubbed when the body ended. Trailers the upstream did not
	// announce go too (net/http sends every TrailerPrefix key).
	release()                      // the header map is written below
	relayableTrailers(res.Trailer) // all of them are in now
	for k, vv := range res.Trailer {
		h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], vv...)
	}
}

// errorEvent renders e as an SSE event. The OpenAI SDKs stop a stream and
// raise when an event's data holds an "error" object.
func errorEvent(e *apiError) []byte {
	b := []byte("event: error\ndata: ")
	b = append(b, e.body()...)
	return append(b, "\n\n"...)
}

// endEvent is the error event pamctl ends a stream with. On a Responses
// stream it takes the next sequence_number after the last event the
// client got (0 when it got none; none when the events it got carried
// none), so the numbers stay contiguous through the end, as they do
// across the events the relay and the firewall add and drop.
func (s *streamBody) endEvent(e *apiError) []byte {
	if s.c.kind != epResponses || s.sentAny && !s.seqOut {
		return errorEvent(e)
	}
	next := int64(0)
	if s.seqOut {
		next = s.outSeq + 1
	}
	body := e.body()
	b := []byte("event: error\ndata: ")
	b = append(b, body[:len(body)-1]...) // the object without its closing brace
	b = append(b, `,"sequence_number":`...)
	b = strconv.AppendInt(b, next, 10)
	return append(b, "}\n\n"...)
}
