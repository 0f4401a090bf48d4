package payload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/scrub"
	"github.com/pamctl/pamctl/proxy/sse"
)

// maxStreams bounds the text fields a stream may have open at once, and
// maxFieldsSeen those it keeps (open, ended or masked whole: an upstream
// naming a new field in every event must not grow the relay's memory
// without bound).
const (
	maxStreams    = 1024
	maxFieldsSeen = 4 * maxStreams
)

// ErrTooManyFields is returned when a stream opens more than maxStreams
// text fields (choices, tool calls, output items) at once.
var ErrTooManyFields = errors.New("payload: too many concurrent text fields in stream")

// ErrSplitOutput is returned when a Responses stream's text deltas give
// one output_index two item ids (or an id and none): the Python and Node
// SDKs join deltas by output_index, openai-go by item_id, so some client
// would join text the relay masked apart.
var ErrSplitOutput = errors.New("payload: the upstream streamed one output's text under two items")

// quoteItem names a field's item (a choice index or a Responses item id)
// in an error, bounded: it is the upstream's text, kept raw in quotes (a
// quote doubled, audit.Quote) for whatever shows the error to escape,
// once; at most 40 bytes of it, "…" after the quote when cut.
func quoteItem(item string) string {
	if len(item) > 40 {
		return audit.Quote(clipBytes(item, 40)) + "…"
	}
	return audit.Quote(item)
}

// ErrTextAfterEnd is returned when the upstream streams more text for a
// field it ended: a chat choice after its finish_reason (before [DONE]), a
// Responses text after its .done, content_part.done, output_item.done or
// the response's end (openai-go reads on past response.completed). The masker released the field's held-back tail when
// it ended, so an address or a key split across that end would reach a
// client that joins the field's deltas whole. (Responses text without an
// item_id is held to it by its output_index; without either, an end is not
// known to be the field's.)
var ErrTextAfterEnd = errors.New("payload: the upstream streamed more text for a field after it ended")

// CopyStream copies the Server-Sent Events response of endpoint from src to
// dst, calling flush (if not nil) after each event, and returns the
// findings, usage and summary.
//
// With masking on it masks, event by event:
//   - chat.completion.chunk: choices[i].delta content, refusal,
//     tool_calls[j].function.arguments and function_call.arguments, each
//     through its own mask.Stream, so a secret split across chunks is caught;
//     logprobs are removed;
//   - Responses events: response.<kind>.delta per item_id and
//     content_index (kinds output_text, refusal, function_call_arguments,
//     custom_tool_call_input, reasoning_summary_text, reasoning_text), their
//     .done events, response.content_part.*, response.output_item.* and the
//     response carried by response.created/in_progress/completed/incomplete/
//     failed, masked consistently with the deltas.
//
// Text held back by a mask.Stream (the possible start of a secret) is
// released before the event that ends its field — the chunk with
// finish_reason, "[DONE]", the .done event, response.output_item.done,
// response.completed — or at the end of the stream, as an extra delta event
// of the same shape (a Responses event takes the sequence_number of the
// event it precedes, and the events after it are numbered one higher:
// renumbered). "[DONE]", comments and unknown events pass through;
// data that is not JSON is masked as plain text. Nothing but held-back text
// and the current event is buffered. An event holding a lone UTF-16
// surrogate escape ends the relay with ErrUnreadableJSON, none of it
// relayed (masking on, or keys to scrub).
//
// With masking off the bytes are copied through as they arrive, and parsed
// only for usage and the summary.
func CopyStream(dst io.Writer, flush func(), src io.Reader, endpoint string, m *mask.Masker) (Result, error) {
	r, err := NewRelay(dst, flush, src, endpoint, m)
	if err != nil {
		return Result{Counts: mask.Counts{}}, err
	}
	for r.Step() {
	}
	return r.Result()
}

// Relay is CopyStream driven by its reader: each Step reads and relays one
// event, so a proxy can pull a stream through without a goroutine of its
// own. A src that returns sse.ErrWouldBlock (with no bytes) makes Step
// return at once, having lost nothing, so the caller may first pass on
// what was relayed so far.
type Relay struct {
	s        *streamer
	rd       *sse.Reader
	tee      *teeReader
	raw      []byte // the copy could not be parsed: bytes are copied as they come
	done     bool
	result   Result
	finished bool
}

// NewRelay prepares to relay the stream of endpoint from src to dst, as
// CopyStream does.
func NewRelay(dst io.Writer, flush func(), src io.Reader, endpoint string, m *mask.Masker) (*Relay, error) {
	return NewScrubbedRelay(dst, flush, src, endpoint, m, nil)
}

// NewScrubbedRelay is NewRelay that also removes the keys of set from every
// string of every JSON event, before masking; streamed text fields go
// through a scrub.Stream each, so a key the upstream splits over the
// deltas of several events (which a client joins back together) is caught
// as well. With a non-empty set the stream is parsed even when masking is
// off. Event names, ids, comments and data that is not JSON are the
// caller's to scrub from the bytes (the proxy scrubs every byte it relays).
func NewScrubbedRelay(dst io.Writer, flush func(), src io.Reader, endpoint string, m *mask.Masker, set *scrub.Set) (*Relay, error) {
	ep, err := normalize(endpoint)
	if err != nil {
		return nil, err
	}
	if flush == nil {
		flush = func() {}
	}
	s := &streamer{
		m: m, ep: ep, flush: flush,
		fields: map[textKey]textField{},
		keys:   set,
		outIdx: map[string]any{},
		res:    Result{Counts: mask.Counts{}},
	}
	r := &Relay{s: s}
	if m.Enabled() || !set.Empty() {
		s.w = sse.NewWriter(dst)
		r.rd = sse.NewReader(src, sse.Limits{})
		r.rd.OnComment = func(c string) {
			if s.err == nil {
				// Clients skip comments, but a raw reader (a log of
				// the stream, curl) does not: they are masked too.
				out, n := s.m.Mask(validText(c, s.m))
				s.res.Counts.Add(n)
				s.err = s.w.WriteComment(out)
				s.flush()
			}
		}
	} else {
		// Copy bytes through; parse a copy for usage and the summary.
		r.tee = &teeReader{r: src, w: dst, flush: flush}
		s.w = sse.NewWriter(io.Discard)
		s.flush = func() {}
		r.rd = sse.NewReader(r.tee, sse.Limits{})
	}
	return r, nil
}

// Step relays the next event (or, when src declined to wait, nothing). It
// returns false once the stream has ended or failed; Result then tells.
func (r *Relay) Step() bool {
	s := r.s
	if r.done || s.err != nil {
		r.done = true
		return false
	}
	if r.raw != nil {
		// The copy cannot be parsed: keep copying bytes until the end.
		_, err := r.tee.Read(r.raw)
		switch {
		case errors.Is(err, sse.ErrWouldBlock):
			return true
		case errors.Is(err, io.EOF):
			r.end(nil)
			return false
		case err != nil:
			r.end(err)
			return false
		}
		return true
	}
	// The event's data is lent: valid until the next Step. What the
	// streamer keeps of it past the event (a chunk's template, field
	// keys, held-back text) it copies.
	ev, err := r.rd.NextLent()
	if err != nil {
		if errors.Is(err, sse.ErrWouldBlock) {
			return true
		}
		if r.tee != nil && r.tee.werr == nil && !errors.Is(err, io.EOF) && r.tee.rerr == nil {
			r.raw = make([]byte, 4<<10)
			return true
		}
		r.end(err)
		return false
	}
	if s.inspects() {
		// An event the proxy cannot read as every client does ends the
		// relay, before any of it goes out (with the bytes copied
		// through as they come, there is nothing to withhold).
		if err := checkSurrogates(ev.Data); err != nil {
			s.err = err
			r.done = true
			return false
		}
	}
	if s.ep == EndpointChat {
		s.err = s.chat(ev)
	} else {
		s.err = s.responses(ev)
	}
	if s.err != nil {
		r.done = true
		return false
	}
	return true
}

// end finishes a stream whose input ended with err (nil or io.EOF: the
// upstream closed it).
func (r *Relay) end(err error) {
	s := r.s
	r.done = true
	s.finishAll()
	switch {
	case s.err != nil:
	case r.tee != nil && r.tee.werr != nil:
		s.err = fmt.Errorf("payload: write to client: %w", r.tee.werr)
	case err != nil && !errors.Is(err, io.EOF):
		s.err = fmt.Errorf("payload: read upstream: %w", err)
	}
}

// HasUsage reports whether the upstream's usage has been read.
func (r *Relay) HasUsage() bool { return r.s.res.HasUsage }

// Result returns the findings, usage and summary, and the error that ended
// the stream. Called before Step returned false it stops the relay where
// it is (the client went away).
func (r *Relay) Result() (Result, error) {
	s := r.s
	if !r.finished {
		r.finished, r.done = true, true
		for _, f := range s.fields {
			if f.mask != nil {
				s.res.Counts.Add(f.mask.Counts())
			}
		}
		s.res.Summary = s.sum.String()
		r.result = s.res
	}
	return r.result, s.err
}

type teeReader struct {
	r     io.Reader
	w     io.Writer
	flush func()
	werr  error
	rerr  error
}

func (t *teeReader) Read(p []byte) (int, error) {
	if t.werr != nil {
		return 0, t.werr
	}
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.werr = werr
			return n, werr
		}
		t.flush()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, sse.ErrWouldBlock) {
		t.rerr = err
	}
	return n, err
}

// textKey names one text field of a stream: a chat choice's content,
// refusal or tool call j, or a Responses item's part.
type textKey struct {
	item string // chat: choice index; responses: item_id
	kind string
	idx  int
	out  string // responses: the output_index of text without an item_id, canonical ("" if none)
}

// respKey names a Responses text field: by its item id, or, for text
// streamed without one, by its output_index (the Python and Node SDKs join
// deltas so), so such a field has ends of its own and its released tail
// goes out under the index it streamed under.
func respKey(itemID, outIdx, kind string, idx int) textKey {
	if kind == kindShellCommand && outIdx != "" {
		// Shell commands stream without an item_id (or with one, which
		// indexItem holds to the output): keyed by their output alone,
		// the shell_call item that starts them names the same field.
		itemID = ""
	}
	if itemID != "" {
		outIdx = ""
	}
	return textKey{item: itemID, kind: kind, idx: idx, out: outIdx}
}

// outIndex is an event's output_index ("" when it has none); plainIndexes
// has held it to plainIndex while the stream is inspected.
func outIndex(v any) string {
	if n, ok := v.(json.Number); ok && plainIndex(string(n)) {
		return string(n)
	}
	return ""
}

// responsesIndexes are the members of a Responses event that place its
// text: clients join deltas by them (and by item_id).
var responsesIndexes = []string{"output_index", "content_index", "summary_index", "command_index"}

// plainIndex reports whether tok is an index as servers write one: digits,
// no sign, fraction, exponent or leading zero, below 2^53. Clients read
// other spellings (0.0, 1e0, -0, "0", false, -1, 2^53+1) as some plain
// index, or as another one (Python's list[-1], JavaScript's rounding),
// while the relay would key the field apart and mask it apart.
func plainIndex(tok string) bool {
	if tok == "" || len(tok) > 16 || tok[0] == '0' && len(tok) > 1 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return false
		}
	}
	n, err := strconv.ParseInt(tok, 10, 64)
	return err == nil && n < 1<<53
}

// maxItemID bounds a Responses item id the relay keeps (ids are a few
// dozen bytes): a field's key, an output's id and the released tail's
// item_id outlive their event.
const maxItemID = 512

// firstText writes t, the text field k starts with (a part's or an item's
// text as added, a shell command as added), through the field's streams as
// its first delta: the SDKs append the deltas that follow to it, so it is
// masked with them, its undecided tail held back into the next delta.
func (s *streamer) firstText(k textKey, t string) (string, error) {
	if t == "" || !s.inspects() {
		return t, nil
	}
	out, err := s.write(k, t)
	if err != nil {
		return t, err
	}
	s.dirty = s.dirty || out != t
	return out, nil
}

// startText is firstText for the string members of m named.
func (s *streamer) startText(k textKey, m map[string]any, members ...string) error {
	for _, name := range members {
		if t, ok := m[name].(string); ok {
			out, err := s.firstText(k, t)
			if err != nil {
				return err
			}
			m[name] = out
		}
	}
	return nil
}

// markEnded records that field k ended (its .done or its part's end),
// streamed or not: text for it after that is ErrTextAfterEnd. A field of
// text without an item_id or output_index is not held to it.
func (s *streamer) markEnded(k textKey) error {
	if !s.inspects() || k.item == "" && k.out == "" {
		return nil
	}
	f, ok := s.fields[k]
	if f.ended || f.mask != nil {
		return nil // an open field ends when finished (flushResponses did)
	}
	if !ok && len(s.fields) >= maxFieldsSeen {
		return ErrTooManyFields
	}
	f.ended = true
	k.item, k.out = strings.Clone(k.item), strings.Clone(k.out)
	s.fields[k] = f
	return nil
}

// markItemEnded records that an output item ended (output_item.done):
// text for any field of it after that, streamed before or not, is
// ErrTextAfterEnd. Kept only where text can follow: an item that carries
// text (the SDKs would append deltas to it), and an output whose text
// streamed without an item id; items without text (web searches, images)
// are not kept, so a long agentic response does not reach the bound.
func (s *streamer) markItemEnded(id, outIdx string, item map[string]any) error {
	if !s.inspects() {
		return nil
	}
	hasText := false
	walkOutputItem(item, func(_ string, _ int, t string) string {
		hasText = hasText || t != ""
		return t
	})
	// Its output, for fields keyed by it (text streamed without an
	// item_id, shell commands), when text can follow there.
	byIndex := hasText
	if _, seen := s.idxItem[outIdx]; seen && outIdx != "" {
		byIndex = true
	}
	for _, p := range [2]place{{item: id}, {out: outIdx}} {
		if p == (place{}) || p.item != "" && !hasText || p.out != "" && !byIndex {
			continue
		}
		if _, ok := s.endedItems[p]; ok {
			continue
		}
		if len(s.endedItems) >= maxFieldsSeen {
			return ErrTooManyFields
		}
		if s.endedItems == nil {
			s.endedItems = map[place]struct{}{}
		}
		p.item, p.out = strings.Clone(p.item), strings.Clone(p.out)
		s.endedItems[p] = struct{}{}
	}
	return nil
}

// place is where a Responses text field belongs: its item, or for text
// without an item id its output.
type place struct{ item, out string }

// itemIDFits refuses an output item's id longer than maxItemID while the
// stream is inspected (its fields are keyed by it).
func (s *streamer) itemIDFits(id string) error {
	if !s.inspects() {
		return nil
	}
	return idFits("an output item id", id)
}

// idFits refuses an item id (what names it) longer than maxItemID.
func idFits(what, id string) error {
	if len(id) > maxItemID {
		return fmt.Errorf("payload: streamed event: %w: %s of %d bytes", ErrUnreadableJSON, what, len(id))
	}
	return nil
}

// plainIndexes refuses a Responses event whose indexes are not plain (see
// plainIndex) or whose item id is longer than maxItemID.
func plainIndexes(o map[string]any) error {
	for _, k := range responsesIndexes {
		v, ok := o[k]
		if !ok {
			continue
		}
		if n, isNum := v.(json.Number); !isNum || !plainIndex(string(n)) {
			return fmt.Errorf("payload: streamed event: %w: its %s is %s, not a plain integer, and clients read such an index as another", ErrUnreadableJSON, k, quoteItem(fmt.Sprint(v)))
		}
	}
	id, _ := o["item_id"].(string)
	return idFits("an item_id", id)
}

// textField is what a stream keeps of one text field: one map entry
// (looked up once a delta) instead of one in each of three maps.
type textField struct {
	mask    *mask.Stream  // while the field is streamed, nil once finished
	scrub   *scrub.Stream // with mask, when keys are set
	args    *argUnescaper // with mask, for call arguments (argumentKinds)
	view    *argView      // with args: escapes as one character each, for the masker
	unview  *argUnview    // with args: the masker's output, escapes written back
	counted bool          // its findings are counted (streamed, or masked whole)
	ended   bool          // streamed, then finished: its held-back tail is out
}

type streamer struct {
	m     *mask.Masker
	ep    string
	w     *sse.Writer
	flush func()
	err   error
	res   Result
	sum   summary

	fields map[textKey]textField // every field seen, open or not
	open   int                   // fields with a mask stream
	keys   *scrub.Set            // vaulted keys to remove, nil: none
	order  []textKey             // creation order, for deterministic flushing

	tmplObj    map[string]any     // chat: the last chunk, decoded (generic path)
	tmplData   string             // chat: the last chunk's data (fast path), decoded on demand
	tmplBuf    []byte             // chat: holds tmplData (events' data is lent: Relay.Step)
	chatType   string             // chat: SSE event name of the last chunk
	doc        chatDoc            // chat: reused by the fast path
	tpl        chunkTemplate      // chat: where the last chunk may differ from the next (rescanChunk)
	afterEnd   bool               // chat: the stream's terminal event went out: what follows is relayed apart, bounded
	reps       []replacement      // chat: reused by the fast path
	spliced    []byte             // the fast paths' spliced event data, reused (spliceForEmit)
	outIdx     map[string]any     // responses: item_id -> output_index
	idxItem    map[string]string  // responses: output_index -> the item_id its text deltas carry (indexItem)
	endedItems map[place]struct{} // responses: items (and item-less outputs) whose output_item.done went out
	seq        any                // responses: last sequence_number (generic path)
	seqTok     []byte             // responses: last sequence_number (fast path), when seq is nil
	seqShift   int64              // responses: extra events added so far (renumbered)
	respType   bool               // responses: events carry an SSE event name
	dirty      bool               // responses: the current event was changed

	kbuf       []byte // scratch for key scrubbing of deltas
	nameIn     string // the last event name emitted, masked (nameOut) with findings nameCounts
	nameOut    string
	nameCounts mask.Counts
	next       EventKind // the kind of the next event emitted (then Unknown again)
	writing    EventKind // the kind of the event being written now
}

// EventKind is what the relay knows of an event it writes: whether it ends
// the stream. It is EventUnknown for anything the relay did not parse
// itself to the end (comments, raw copies, events of the generic path);
// the consumer then reads the event itself.
type EventKind uint8

// Event kinds.
const (
	EventUnknown  EventKind = iota
	EventPlain              // not terminal, not a usage-only chat chunk
	EventTerminal           // [DONE], response.completed/failed/incomplete, an error event
)

// TerminalType reports whether an event type (an SSE event name, or a
// Responses event's "type") ends its stream.
func TerminalType(t string) bool {
	switch t {
	case "response.completed", "response.failed", "response.incomplete", "error":
		return true
	}
	return false
}

func (s *streamer) emit(ev sse.Event) error {
	if s.m.Enabled() {
		// Event names and ids are the upstream's text too (clients
		// dispatch on the name; a raw reader shows both): masked after
		// the keys are scrubbed, as data is; the last name's masking
		// is remembered, as a stream repeats a few.
		if ev.Type != "" {
			if ev.Type != s.nameIn {
				out, c := s.m.Mask(validText(s.keys.String(ev.Type), s.m))
				s.nameIn, s.nameOut, s.nameCounts = ev.Type, out, c
			}
			ev.Type = s.nameOut
			s.res.Counts.Add(s.nameCounts)
		}
		if ev.ID != "" {
			out, c := s.m.Mask(validText(s.keys.String(ev.ID), s.m))
			s.res.Counts.Add(c)
			ev.ID = out
		}
	}
	s.writing, s.next = s.next, EventUnknown
	s.afterEnd = s.afterEnd || s.writing == EventTerminal
	err := s.w.WriteEvent(ev)
	s.writing = EventUnknown
	if err != nil {
		return fmt.Errorf("payload: write to client: %w", err)
	}
	s.flush()
	return nil
}

// WritingKind is the kind of the event the relay is writing to its dst at
// the moment (its Write calls this to learn what it got): one event per
// Write, so a consumer need not parse what the relay parsed already.
func (r *Relay) WritingKind() EventKind { return r.s.writing }

func (s *streamer) emitObj(ev sse.Event, o map[string]any, changed bool) error {
	if changed {
		b, err := encode(o)
		if err != nil {
			s.next = EventUnknown
			return err
		}
		ev.Data = string(b)
	}
	return s.emit(ev)
}

// emitKind emits the event being handled, whose kind is known. A
// Responses event is numbered on from the extra events the relay added
// before it (renumbered).
func (s *streamer) emitKind(k EventKind, ev sse.Event, o map[string]any, changed bool) error {
	s.next = k
	if s.ep != EndpointChat && o != nil {
		if n, ok := o["sequence_number"].(json.Number); ok {
			if renum, ok := s.renumbered(string(n)); ok {
				o["sequence_number"], changed = json.Number(renum), true
			}
		}
	}
	return s.emitObj(ev, o, changed)
}

// renumbered is an upstream event's sequence_number (as written) as the
// client gets it: each extra event the relay added before it (text held
// back, released before the event that ends its field) takes a number,
// and the events after it are numbered on, so that the numbers stay
// contiguous and increasing. ok is false when the number stays as it is
// (nothing was added, or it is not an integer).
func (s *streamer) renumbered(seq string) (string, bool) {
	if s.seqShift == 0 || seq == "" {
		return "", false
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n > math.MaxInt64-s.seqShift {
		return "", false
	}
	return strconv.FormatInt(n+s.seqShift, 10), true
}

// extraSeq is the sequence_number of an extra event the relay adds
// before the event o (nil: at the end of the stream), given the last one
// read: the number the event would have had, the events after it are
// numbered one higher. nil when the stream carries none.
func (s *streamer) extraSeq(o map[string]any) any {
	if o != nil {
		if v, ok := o["sequence_number"]; ok {
			if n, ok := v.(json.Number); ok {
				if renum, ok := s.renumberedExtra(string(n), 0); ok {
					return renum
				}
			}
			return v // not an integer: as before
		}
	}
	// After the last event read.
	var last string
	switch {
	case len(s.seqTok) > 0:
		last = string(s.seqTok)
	case s.seq != nil:
		n, ok := s.seq.(json.Number)
		if !ok {
			return s.seq
		}
		last = string(n)
	default:
		return nil
	}
	if renum, ok := s.renumberedExtra(last, 1); ok {
		return renum
	}
	return json.Number(last)
}

// renumberedExtra numbers an extra event at seq+after (an upstream
// number), and the events after it one higher.
func (s *streamer) renumberedExtra(seq string, after int64) (json.Number, bool) {
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n > math.MaxInt64-s.seqShift-after-1 {
		return "", false
	}
	out := json.Number(strconv.FormatInt(n+after+s.seqShift, 10))
	s.seqShift++
	return out, true
}

// Members the relay reads from stream events to join a field's deltas,
// by position. One that differs from them only in letter case is a member
// a case-insensitive decoder (Go's encoding/json, and so openai-go) reads
// in their place, while the relay masked it alone, within its event: an
// address or a key split over such members would come out whole. Such an
// event ends the stream, as JSON Go cannot read does (ErrUnreadableJSON).
var (
	chunkKeys          = []string{"choices"}
	chunkChoiceKeys    = []string{"index", "delta"}
	chunkDeltaKeys     = append(slices.Clone(chatTextKeys), "tool_calls", "function_call", "audio")
	chunkCallKeys      = []string{"index", "function"}
	chunkFunctionKeys  = []string{"arguments"}
	chunkAudioKeys     = []string{"transcript"}
	responsesEventKeys = []string{"type", "delta", "text", "arguments", "item_id", "content_index", "summary_index"}
)

// chunkCaseClash refuses a chat chunk with a member spelled, in another
// letter case, as one the relay reads at its position.
func chunkCaseClash(chunk map[string]any) error {
	if err := caseClash(chunk, chunkKeys, "a chunk's"); err != nil {
		return err
	}
	for _, v := range arr(chunk["choices"]) {
		ch := obj(v)
		if err := caseClash(ch, chunkChoiceKeys, "a choice's"); err != nil {
			return err
		}
		d := obj(ch["delta"])
		if err := caseClash(d, chunkDeltaKeys, "a delta's"); err != nil {
			return err
		}
		for _, tc := range arr(d["tool_calls"]) {
			if err := caseClash(obj(tc), chunkCallKeys, "a tool call's"); err != nil {
				return err
			}
			if err := caseClash(obj(obj(tc)["function"]), chunkFunctionKeys, "a tool call's function's"); err != nil {
				return err
			}
		}
		if err := caseClash(obj(d["function_call"]), chunkFunctionKeys, "a function call's"); err != nil {
			return err
		}
		if err := caseClash(obj(d["audio"]), chunkAudioKeys, "an audio delta's"); err != nil {
			return err
		}
	}
	return nil
}

// caseClash refuses a member of m that differs only in letter case from
// one in known (what a decoder matching keys case-insensitively reads).
func caseClash(m map[string]any, known []string, where string) error {
	for k := range m {
		if n := clash(k, known); n != "" {
			return fmt.Errorf("payload: streamed event: %w: %s member %s differs from %q only in letter case, and a case-insensitive decoder reads it as that member", ErrUnreadableJSON, where, audit.Quote(k), n)
		}
	}
	return nil
}

// responsesKind tells whether a decoded Responses event ends the stream,
// as a consumer reading it with encoding/json (case-insensitive keys, the
// last of duplicates) would: EventUnknown when a key other than "type"
// folds to "type", any key folds to "error", or "type" is not a string.
func responsesKind(name string, o map[string]any) EventKind {
	t, isStr := o["type"].(string)
	if _, has := o["type"]; has && !isStr {
		return EventUnknown
	}
	for k := range o {
		if k != "type" && strings.EqualFold(k, "type") || strings.EqualFold(k, "error") {
			return EventUnknown
		}
	}
	if TerminalType(name) || TerminalType(t) {
		return EventTerminal
	}
	return EventPlain
}

// opaque handles data that is not a JSON object.
func (s *streamer) opaque(ev sse.Event) error {
	if strings.TrimSpace(ev.Data) != "[DONE]" {
		if s.inspects() && looksLikeJSON(ev.Data) {
			// JSON Go's decoder refused (NaN, a BOM, deep nesting)
			// or that is not an object: a client decodes each
			// event's data, escapes and all, which masking it as
			// text would miss (as MaskResponse refuses whole answers).
			return fmt.Errorf("payload: streamed event: %w", ErrUnreadableJSON)
		}
		out, c := s.m.Mask(validText(ev.Data, s.m))
		s.res.Counts.Add(c)
		ev.Data = out
	}
	return s.emit(ev)
}

// write masks the next piece of field k.
func (s *streamer) write(k textKey, delta string) (string, error) {
	f := s.fields[k]
	// After a chat stream's [DONE] the SDKs stop reading (what follows is
	// relayed apart, bounded); after response.completed they read on.
	ended := f.ended
	if !ended && len(s.endedItems) > 0 && delta != "" {
		_, ended = s.endedItems[place{k.item, k.out}]
	}
	if ended && delta != "" && (s.ep == EndpointChat && !s.afterEnd || s.ep != EndpointChat && (k.item != "" || k.out != "")) && s.inspects() {
		if k.item == "" {
			return "", fmt.Errorf("%w (%s of output %s)", ErrTextAfterEnd, k.kind, k.out)
		}
		return "", fmt.Errorf("%w (%s of %s)", ErrTextAfterEnd, k.kind, quoteItem(k.item))
	}
	if f.mask == nil {
		if s.open >= maxStreams || !f.counted && len(s.fields) >= maxFieldsSeen {
			return "", ErrTooManyFields
		}
		k.item, k.out = strings.Clone(k.item), strings.Clone(k.out) // the key outlives the event it came in
		f.mask, f.counted = s.m.NewStream(), true
		if !s.keys.Empty() {
			f.scrub = s.keys.NewStream()
		}
		if argumentKinds[k.kind] {
			f.args, f.view, f.unview = new(argUnescaper), new(argView), new(argUnview)
		}
		s.fields[k] = f
		s.open++
		s.order = append(s.order, k)
	}
	st := f.mask
	if f.args != nil {
		// Arguments: what the agent's second decode reads (argescapes.go).
		delta = f.args.write(delta)
	}
	if ks := f.scrub; ks != nil {
		// Write only reads its input: scrub the delta's bytes in place,
		// into a buffer kept for the stream; most deltas come out as
		// they went in and keep their string.
		s.kbuf = ks.Write(s.kbuf[:0], unsafe.Slice(unsafe.StringData(delta), len(delta)))
		if string(s.kbuf) != delta {
			delta = string(s.kbuf)
		}
		if cap(s.kbuf) > 64<<10 {
			s.kbuf = nil
		}
	}
	if f.view != nil {
		// Scrubbed as escapes, masked with each escape one character
		// (argescapes.go).
		out := f.unview.write(st.Write(f.view.write(delta)))
		s.res.TextBytes += int64(len(out))
		s.summarize(k, out)
		return out, nil
	}
	out := st.Write(delta)
	s.res.TextBytes += int64(len(out))
	s.summarize(k, out)
	return out, nil
}

// finish ends field k and returns its held-back tail.
func (s *streamer) finish(k textKey) string {
	f := s.fields[k]
	st := f.mask
	if st == nil {
		return ""
	}
	out := ""
	if f.args != nil {
		tail := f.args.flush()
		if ks := f.scrub; ks != nil {
			tail = string(ks.Write(nil, []byte(tail))) + string(ks.Flush(nil))
		}
		tail = f.view.write(tail) + f.view.flush()
		out = st.Write(tail) + st.Flush()
		out = f.unview.write(out) + f.unview.flush()
	} else {
		if ks := f.scrub; ks != nil {
			out = st.Write(string(ks.Flush(nil)))
		}
		out += st.Flush()
	}
	s.res.TextBytes += int64(len(out))
	s.res.Counts.Add(st.Counts())
	f.mask, f.scrub, f.args, f.view, f.unview, f.ended = nil, nil, nil, nil, nil, true
	s.fields[k] = f
	s.open--
	s.summarize(k, out)
	return out
}

// pending returns the open fields selected by keep, in creation order, and
// forgets closed ones.
func (s *streamer) pending(keep func(textKey) bool) []textKey {
	var out []textKey
	live := s.order[:0]
	for _, k := range s.order {
		if s.fields[k].mask == nil {
			continue
		}
		live = append(live, k)
		if keep(k) {
			out = append(out, k)
		}
	}
	s.order = live
	return out
}

// maskFull masks the whole text of field k (a .done event or a full item);
// its findings count only if the field was not streamed.
func (s *streamer) maskFull(k textKey, text string) string {
	if text == "" {
		return text
	}
	if argumentKinds[k.kind] {
		if plain := ArgumentEscapes(text); plain != text {
			text, s.dirty = plain, true
		}
	}
	if clean := s.keys.String(text); clean != text {
		text, s.dirty = clean, true
	}
	var out string
	var c mask.Counts
	if argumentKinds[k.kind] {
		// Masked with each escape one character (argescapes.go).
		out = viewMasked(text, func(t string) string {
			var o string
			o, c = s.m.Mask(t)
			return o
		})
	} else {
		out, c = s.m.Mask(text)
	}
	s.dirty = s.dirty || out != text
	if f := s.fields[k]; !f.counted {
		s.res.Counts.Add(c)
		if len(s.fields) < maxFieldsSeen { // past it a later copy may count again
			f.counted = true
			k.item, k.out = strings.Clone(k.item), strings.Clone(k.out) // the key outlives the event it came in
			s.fields[k] = f
		}
	}
	return out
}

// maskOnce masks a string that is not streamed (it is whole in its
// event) and counts its findings.
func (s *streamer) maskOnce(text string) string {
	if text == "" {
		return text
	}
	if clean := s.keys.String(text); clean != text {
		text, s.dirty = clean, true
	}
	out, c := s.m.Mask(text)
	s.res.Counts.Add(c)
	s.dirty = s.dirty || out != text
	return out
}

// maskArgsOnce is maskOnce for a call's arguments that are not streamed:
// what the agent's second decode reads is scrubbed of keys, then masked
// with each escape one character (argescapes.go).
func (s *streamer) maskArgsOnce(text string) string {
	if text == "" {
		return text
	}
	plain := ArgumentEscapes(text)
	if clean := s.keys.String(plain); clean != plain {
		plain, s.dirty = clean, true
	}
	out := viewMasked(plain, func(t string) string {
		o, c := s.m.Mask(t)
		s.res.Counts.Add(c)
		return o
	})
	s.dirty = s.dirty || out != text
	return out
}

// maskEvent masks every non-structural string of a Responses event (or
// part of one) not otherwise handled, and returns it (a string value comes
// back masked).
func (s *streamer) maskEvent(v any, skip func(string) bool) any {
	if s.inspects() {
		return maskStringsKeys(v, s.maskOnce, s.maskOnce, s.maskArgsOnce, skip)
	}
	return v
}

// inspects reports whether strings are masked or scrubbed of keys.
func (s *streamer) inspects() bool { return s.m.Enabled() || !s.keys.Empty() }

// textDeltaKind reports whether response.<kind>.delta events stream text
// (not base64 audio or images).
func textDeltaKind(kind string) bool {
	switch kind {
	case "", "output_item", "content_part", "reasoning_summary_part":
		return false // structure events, handled on their own
	}
	return !strings.HasSuffix(kind, "audio") && !strings.Contains(kind, "image")
}

func (s *streamer) summarize(k textKey, text string) {
	if (k.kind == "content" && k.item == "0") || k.kind == kindOutputText {
		s.sum.add(text)
	}
}

func (s *streamer) finishAll() {
	if s.err != nil {
		return
	}
	if s.ep == EndpointChat {
		s.err = s.flushChat(nil)
		return
	}
	s.err = s.flushResponses(sse.Event{}, nil, func(textKey) bool { return true })
}

// ---- chat ----------------------------------------------------------------

func (s *streamer) chat(ev sse.Event) error {
	if strings.TrimSpace(ev.Data) == "[DONE]" {
		if err := s.flushChat(nil); err != nil {
			return err
		}
		s.next = EventTerminal
		return s.emit(ev)
	}
	done, err := s.chatFast(ev)
	if !done {
		err = s.chatSlow(ev)
	}
	if errors.Is(err, ErrTextAfterEnd) {
		return &AfterEndError{Data: strings.Clone(ev.Data), Err: err}
	}
	return err
}

// AfterEndError is ErrTextAfterEnd in a chat stream, with the data of the
// chunk that carried the text, as the upstream sent it (unmasked: never
// shown, logged or recorded as it is). The tool-call firewall reads the
// calls it begins, to record them.
type AfterEndError struct {
	Data string
	Err  error
}

func (e *AfterEndError) Error() string { return e.Err.Error() }
func (e *AfterEndError) Unwrap() error { return e.Err }

// chatSlow handles a chunk chatFast does not: decoded whole. Apart from
// chat, whose frame is on the stack under every chunk (848 bytes with
// this inside, 80 without).
func (s *streamer) chatSlow(ev sse.Event) error {
	chunk, err := decodeObject([]byte(ev.Data))
	if err != nil {
		return s.opaque(ev)
	}
	if s.inspects() {
		if err := chunkCaseClash(chunk); err != nil {
			return err
		}
	}
	if u, ok := parseUsage(chunk["usage"]); ok {
		s.res.Usage, s.res.HasUsage = u, true
	}
	s.chatType = ev.Type
	s.tmplObj, s.tmplData = chunk, "" // chatChunk reads its top-level fields
	changed, hasText := false, false
	var finishing []map[string]any
	finishingIdx := map[string]bool{}
	once := func(t string) string {
		out := s.maskOnce(t)
		changed = changed || out != t
		return out
	}
	onceArgs := func(t string) string {
		out := s.maskArgsOnce(t)
		changed = changed || out != t
		return out
	}
	choices, isList := chunk["choices"].([]any)
	for i, v := range choices {
		ch := obj(v)
		if ch == nil {
			if s.inspects() {
				choices[i] = maskStringsKeys(v, once, once, onceArgs, nil) // a choice of another type, masked whole
			}
			continue
		}
		ci, _ := intOf(ch["index"])
		item := strconv.Itoa(ci)
		if s.m.Enabled() && ch["logprobs"] != nil {
			ch["logprobs"], changed = nil, true
		}
		delta, deltaObj := ch["delta"].(map[string]any)
		text := false
		var werr error
		walkChatMessage(delta, func(kind string, idx int, t string) string {
			text = true
			out, err := s.write(textKey{item: item, kind: kind, idx: idx}, t)
			if err != nil {
				werr = err
			}
			changed = changed || out != t
			return out
		})
		if werr != nil {
			return werr
		}
		if s.inspects() {
			// Every other model-written string of the choice, masked
			// within this chunk (a delta that is not an object whole).
			maskChatRest(delta, once)
			maskStringsKeys(ch, once, once, onceArgs, func(k string) bool { return k == "delta" && deltaObj || k == "logprobs" })
		}
		for _, tc := range arr(delta["tool_calls"]) {
			if name, _ := obj(obj(tc)["function"])["name"].(string); name != "" && ci == 0 {
				s.sum.tool(name, "…")
			}
		}
		if fr, _ := ch["finish_reason"].(string); fr != "" {
			finishing = append(finishing, ch)
			finishingIdx[item] = true
			hasText = hasText || text
		}
	}
	if s.inspects() {
		// Whatever else the upstream put in the chunk, and choices that
		// are not a list.
		maskStringsKeys(chunk, once, once, onceArgs, func(k string) bool { return k == "choices" && isList })
	}
	// With masking on, a chunk read on this path goes out as it was read
	// and masked: a duplicate member, or invalid UTF-8 (read as U+FFFD),
	// never reaches a client that reads it differently.
	changed = changed || s.m.Enabled()
	if len(finishing) == 0 {
		return s.emitObj(ev, chunk, changed)
	}
	if !hasText {
		// Usual case: the finishing chunk has an empty delta. Release
		// the tails just before it.
		if err := s.flushChat(finishingIdx); err != nil {
			return err
		}
		return s.emitObj(ev, chunk, changed)
	}
	// The finishing chunk carries text: send it without finish_reason,
	// then the tails, then finish_reason (and usage) on their own.
	reasons := make([]any, len(finishing))
	for i, ch := range finishing {
		reasons[i], ch["finish_reason"] = ch["finish_reason"], nil
	}
	usage, hadUsage := chunk["usage"]
	delete(chunk, "usage")
	if err := s.emitObj(ev, chunk, true); err != nil {
		return err
	}
	if err := s.flushChat(finishingIdx); err != nil {
		return err
	}
	final := s.chatChunk(nil)
	ends := make([]any, len(finishing))
	for i, ch := range finishing {
		ends[i] = map[string]any{"index": ch["index"], "delta": map[string]any{}, "finish_reason": reasons[i], "logprobs": nil}
	}
	final["choices"] = ends
	if hadUsage {
		final["usage"] = usage
	}
	return s.emitObj(sse.Event{Type: ev.Type}, final, true)
}

// chatFast handles the usual chunks — content or refusal deltas, a
// finish_reason with an empty delta, usage — without decoding them into
// maps: the deltas go through their mask streams as on the generic path,
// held-back tails are released before a finishing chunk, and the chunk goes
// out as it came, with only the changed strings replaced. It reports done
// false, having changed nothing, for any other chunk (text on a finishing
// chunk, tool calls, logprobs to remove, anything unusual), which the
// generic path then handles.
func (s *streamer) chatFast(ev sse.Event) (bool, error) {
	if !fastPaths {
		return false, nil
	}
	d := &s.doc
	tpl := s.tpl.ok
	s.tpl.ok = false // until this chunk is done with and tmplData holds it
	if !tpl || !s.rescanChunk(ev.Data, d) {
		d.choices, d.hasUsage, d.hasObf, d.object = d.choices[:0], false, false, ""
		if !scanChat(ev.Data, "delta", s.m.Enabled(), d) {
			return false, nil
		}
	}
	var finishing map[string]bool
	for _, ch := range d.choices {
		if ch.finish {
			if ch.msg.hasC || ch.msg.hasR {
				return false, nil // text on the finishing chunk: split up below
			}
			if finishing == nil {
				finishing = map[string]bool{}
			}
			finishing[strconv.Itoa(ch.index)] = true
		}
	}
	if d.hasUsage {
		s.res.Usage, s.res.HasUsage = d.usage, true
	}
	s.chatType = ev.Type
	s.tmplObj, s.tmplData = nil, s.keepTemplate(ev.Data)
	reps := s.reps[:0]
	for _, ch := range d.choices {
		if !ch.isObj || !ch.msg.hasC && !ch.msg.hasR {
			continue
		}
		item := strconv.Itoa(ch.index)
		for _, f := range [2]struct {
			t    text
			has  bool
			kind string
		}{{ch.msg.content, ch.msg.hasC, "content"}, {ch.msg.refusal, ch.msg.hasR, "refusal"}} {
			if !f.has {
				continue
			}
			out, err := s.write(textKey{item: item, kind: f.kind}, f.t.val)
			if err != nil {
				return true, err
			}
			if out != f.t.val {
				reps = append(reps, replacement{t: f.t, val: out})
			}
		}
	}
	s.reps = reps
	if finishing != nil {
		// The usual finishing chunk (empty delta): release the tails
		// just before it.
		if err := s.flushChat(finishing); err != nil {
			return true, err
		}
	}
	if len(reps) > 0 {
		slices.SortFunc(reps, func(a, b replacement) int { return a.t.off - b.t.off })
		ev.Data = s.spliceForEmit(ev.Data, reps)
	}
	// scanChat read every key of the chunk, none of them "type" or
	// "error" in any case: only its event name can end the stream. A
	// chunk without choices (the usage chunk) is left to the consumer.
	if len(d.choices) > 0 {
		s.next = EventPlain
		if TerminalType(ev.Type) {
			s.next = EventTerminal
		}
	}
	s.keepChunk(d)
	return true, s.emit(ev)
}

// chunkTemplates turns rescanChunk on; tests turn it off to compare.
var chunkTemplates = true

// chunkTemplate is what rescanChunk needs of the last chunk chatFast
// scanned: tmplData holds its bytes, choices its scan, and vars the string
// tokens the next chunk may hold in their place (every content and refusal
// text, and obfuscation), in order. Streams repeat the same chunk with only
// those changed, so most chunks are compared, not scanned.
type chunkTemplate struct {
	ok      bool
	choices []chatChoice
	vars    []chunkVar
}

// chunkVar is a string token of the template: at off, n bytes long, the
// content or refusal of choices[choice], or obfuscation.
type chunkVar struct {
	off, n int
	choice int
	kind   uint8
}

const (
	varContent uint8 = iota
	varRefusal
	varObfuscation
)

// keepChunk makes the chunk chatFast just handled (d, its bytes in
// tmplData) the template of the next, when it is the usual content delta:
// no usage, no finish_reason, some text. Chunks that rescanChunk reads
// differently from scanChat are none: the two are compared by tests.
func (s *streamer) keepChunk(d *chatDoc) {
	t := &s.tpl
	if !fastPaths || !chunkTemplates || d.hasUsage || len(d.choices) == 0 || len(s.tmplData) > 64<<10 {
		return
	}
	t.vars = t.vars[:0]
	for i, ch := range d.choices {
		if ch.finish {
			return
		}
		if ch.msg.hasC {
			t.vars = append(t.vars, chunkVar{ch.msg.content.off, len(ch.msg.content.raw), i, varContent})
		}
		if ch.msg.hasR {
			t.vars = append(t.vars, chunkVar{ch.msg.refusal.off, len(ch.msg.refusal.raw), i, varRefusal})
		}
	}
	if len(t.vars) == 0 {
		return
	}
	if d.hasObf {
		t.vars = append(t.vars, chunkVar{d.obf.off, len(d.obf.raw), 0, varObfuscation})
	}
	slices.SortFunc(t.vars, func(a, b chunkVar) int { return a.off - b.off })
	t.choices = append(t.choices[:0], d.choices...)
	t.ok = true
}

// rescanChunk reads data into d as scanChat would, when data is the
// template chunk (tmplData) with other strings in its variable tokens:
// every byte between them must be the template's. JSON's grammar makes the
// rest follow: one string token for another leaves every key, value and
// its place as they were, so the scan is the template's with those texts.
func (s *streamer) rescanChunk(data string, d *chatDoc) bool {
	tpl, t := s.tmplData, &s.tpl
	d.choices = append(d.choices[:0], t.choices...)
	d.hasUsage, d.hasObf, d.object = false, false, "" // object: not kept (lent bytes; only answers read it)
	at, j := 0, 0
	for k := range t.vars {
		v := &t.vars[k]
		same := tpl[at:v.off]
		if len(data)-j < len(same) || data[j:j+len(same)] != same {
			return false
		}
		j += len(same)
		p := jscan{s: data, i: j}
		nt, ok := p.strValue()
		if !ok || !utf8.ValidString(nt.raw) {
			return false
		}
		switch v.kind {
		case varContent:
			d.choices[v.choice].msg.content = nt
		case varRefusal:
			d.choices[v.choice].msg.refusal = nt
		default:
			d.obf, d.hasObf = nt, true
		}
		j, at = p.i, v.off+v.n
	}
	return tpl[at:] == data[j:]
}

// keepTemplate returns a copy of data (the event's own bytes are lent, see
// Relay.Step) that stays valid until the next call: the chunk a finishing
// chunk or the stream's end may be built from, one chunk later.
func (s *streamer) keepTemplate(data string) string {
	if len(data) > 64<<10 || cap(s.tmplBuf) > 64<<10 {
		s.tmplBuf = nil // one huge chunk does not pin a buffer for the stream's life
		return strings.Clone(data)
	}
	s.tmplBuf = append(s.tmplBuf[:0], data...)
	return unsafe.String(unsafe.SliceData(s.tmplBuf), len(s.tmplBuf))
}

// chatChunk returns a chunk with the last chunk's top-level fields.
func (s *streamer) chatChunk(choices []any) map[string]any {
	c := map[string]any{"object": "chat.completion.chunk"}
	last := s.tmplObj
	if last == nil && s.tmplData != "" {
		last, _ = decodeObject([]byte(s.tmplData))
	}
	for k, v := range last {
		if k != "choices" && k != "usage" && k != "obfuscation" {
			c[k] = v
		}
	}
	c["choices"] = choices
	return c
}

// flushChat releases the tails of the choices in only (all when nil) as one
// extra chunk.
func (s *streamer) flushChat(only map[string]bool) error {
	var tails []chatTail
	for _, k := range s.pending(func(k textKey) bool { return only == nil || only[k.item] }) {
		if tail := s.finish(k); tail != "" {
			tails = append(tails, chatTail{k, tail})
		}
	}
	if len(tails) == 0 {
		return nil
	}
	if fastPaths && s.tmplObj == nil && s.tmplData != "" {
		if data, ok := appendFlushChunk(s.spliced[:0], s.tmplData, tails); ok {
			// In the buffer spliceForEmit uses: emit copies the event
			// into its frame, and the template is in its own buffer.
			s.spliced = data
			// Known keys only (the template's, which scanChat read, and
			// choices): only the event's name can end the stream.
			s.next = EventPlain
			if TerminalType(s.chatType) {
				s.next = EventTerminal
			}
			return s.emit(sse.Event{Type: s.chatType, Data: unsafe.String(unsafe.SliceData(data), len(data))})
		}
	}
	deltas := map[string]map[string]any{}
	var items []string
	for _, t := range tails {
		k, tail := t.k, t.tail
		d := deltas[k.item]
		if d == nil {
			d = map[string]any{}
			deltas[k.item] = d
			items = append(items, k.item)
		}
		switch k.kind {
		case "tool":
			d["tool_calls"] = append(arr(d["tool_calls"]), map[string]any{
				"index": k.idx, "function": map[string]any{"arguments": tail}})
		case "function_call":
			d["function_call"] = map[string]any{"arguments": tail}
		case "audio":
			d["audio"] = map[string]any{"transcript": tail}
		default: // content, refusal
			d[k.kind] = tail
		}
	}
	choices := make([]any, len(items))
	for i, item := range items {
		choices[i] = map[string]any{"index": json.Number(item), "delta": deltas[item], "finish_reason": nil, "logprobs": nil}
	}
	return s.emitObj(sse.Event{Type: s.chatType}, s.chatChunk(choices), true)
}

// chatTail is a held-back tail flushChat releases.
type chatTail struct {
	k    textKey
	tail string
}

// appendFlushChunk appends the chunk flushChat's generic path builds
// (chatChunk around the tails), written straight from the template: tmpl is
// a chunk scanChat accepted (known top-level keys, none escaped or
// repeated), whose members but choices, usage and obfuscation go out as
// written, in their order. Only content and refusal tails of choices with
// canonical indexes are written so; ok is false for anything else (tool
// calls, audio), which the generic path then writes.
func appendFlushChunk(b []byte, tmpl string, tails []chatTail) ([]byte, bool) {
	for _, t := range tails {
		if t.k.kind != "content" && t.k.kind != "refusal" {
			return b, false
		}
		if n, err := strconv.Atoi(t.k.item); err != nil || strconv.Itoa(n) != t.k.item {
			return b, false
		}
	}
	b = append(b, '{')
	hasObject := false
	p := &jscan{s: tmpl}
	p.ws()
	ok := p.object(func(key string) bool {
		start := p.i
		if !p.value() {
			return false
		}
		switch key {
		case "choices", "usage", "obfuscation":
			return true
		case "object":
			hasObject = true
		}
		b = appendJSONString(b, key)
		b = append(b, ':')
		b = append(b, tmpl[start:p.i]...)
		b = append(b, ',')
		return true
	})
	if !ok || !p.end() {
		return b, false
	}
	if !hasObject {
		b = append(b, `"object":"chat.completion.chunk",`...)
	}
	b = append(b, `"choices":[`...)
	// One choice per item, in the order of its first tail, as the generic
	// path's items; its delta map encodes content before refusal.
	for i, t := range tails {
		if slices.ContainsFunc(tails[:i], func(u chatTail) bool { return u.k.item == t.k.item }) {
			continue
		}
		if b[len(b)-1] != '[' {
			b = append(b, ',')
		}
		b = append(b, `{"delta":{`...)
		sep := false
		for _, kind := range [2]string{"content", "refusal"} {
			for _, u := range tails[i:] {
				if u.k.item == t.k.item && u.k.kind == kind {
					if sep {
						b = append(b, ',')
					}
					b = appendJSONString(append(append(b, '"'), kind+`":`...), u.tail)
					sep = true
					break
				}
			}
		}
		b = append(b, `},"finish_reason":null,"index":`...)
		b = append(b, t.k.item...)
		b = append(b, `,"logprobs":null}`...)
	}
	return append(b, "]}"...), true
}

// ---- responses --------------------------------------------------------------

// streamKinds are the Responses text fields streamed as
// response.<kind>.delta, with the field holding the full text in their
// .done event.
var streamKinds = map[string]string{
	kindOutputText:    "text",
	kindRefusal:       "refusal",
	kindFuncArgs:      "arguments",
	kindCustomInput:   "input",
	kindReasoningSum:  "text",
	kindReasoningText: "text",
}

// partKinds maps content part types to field kinds.
var partKinds = map[string]string{
	"output_text":    kindOutputText,
	"refusal":        kindRefusal,
	"summary_text":   kindReasoningSum,
	"reasoning_text": kindReasoningText,
}

// indexItem keeps the item id (or none) the text deltas of each
// output_index carry, and refuses a delta that gives an index another
// (ErrSplitOutput). Without masking or keys nothing is joined, so nothing
// is checked.
func (s *streamer) indexItem(outIdx, itemID string) error {
	if outIdx == "" || !s.inspects() {
		return nil
	}
	prev, seen := s.idxItem[outIdx]
	if !seen {
		if len(s.idxItem) >= maxStreams {
			return ErrTooManyFields
		}
		if s.idxItem == nil {
			s.idxItem = map[string]string{}
		}
		s.idxItem[strings.Clone(outIdx)] = strings.Clone(itemID)
		return nil
	}
	if prev != itemID {
		return fmt.Errorf("%w (output %s: %s, then %s)", ErrSplitOutput, quoteItem(outIdx), quoteItem(prev), quoteItem(itemID))
	}
	return nil
}

// kindShellCommand is the text of a shell call's command, streamed per
// command_index (and without an item_id); kindShellOutput+"stdout" (and
// "stderr") the output of a shell call's command, streamed per
// command_index as members of an object delta
// (response.shell_call_output_content.delta).
const (
	kindShellCommand = "shell_call_command"
	kindShellOutput  = "shell_call_output_content."
)

var shellOutputs = []string{"stdout", "stderr"}

// partMember names the member that places a text of kind within its item,
// as the SDKs join it: a reasoning summary's summary_index, a shell
// command's command_index, a content part's content_index ("" for the
// kinds that have none: function call arguments and the like).
func partMember(kind string) string {
	switch kind {
	case kindReasoningSum:
		return "summary_index"
	case kindShellCommand, kindShellOutput + "stdout", kindShellOutput + "stderr":
		return "command_index"
	case kindOutputText, kindRefusal, kindReasoningText:
		return "content_index"
	}
	return ""
}

// partIndex is the index of kind's part in event o (see partMember); a
// kind without one reads the content_index it may carry anyway.
// placeItem keeps the output_index item sits at (plain, see plainIndex),
// and refuses an event that places it at another (ErrSplitOutput): a
// tail released under the item would go out at the new index, where
// clients joining by index add it to another output's text. The items
// kept are bounded (ErrTooManyFields).
func (s *streamer) placeItem(item, outIdx string) error {
	old, seen := s.outIdx[item]
	if !seen {
		if s.inspects() && len(s.outIdx) >= maxStreams {
			return ErrTooManyFields // items are let go at their output_item.done
		}
		s.outIdx[strings.Clone(item)] = json.Number(strings.Clone(outIdx))
		return nil
	}
	if n, _ := old.(json.Number); string(n) != outIdx {
		if s.inspects() {
			return fmt.Errorf("%w (item %s: output %s, then %s)", ErrSplitOutput, quoteItem(item), quoteItem(string(n)), quoteItem(outIdx))
		}
		s.outIdx[strings.Clone(item)] = json.Number(strings.Clone(outIdx)) // the new key replaces the old: cloned too
	}
	return nil
}

func partIndex(o map[string]any, kind string) int {
	m := partMember(kind)
	if m == "" {
		m = "content_index"
	}
	n, _ := intOf(o[m])
	return n
}

func (s *streamer) responses(ev sse.Event) error {
	if done, err := s.responsesFast(ev); done {
		return err
	}
	return s.responsesSlow(ev)
}

// responsesSlow handles an event responsesFast does not (see chatSlow).
func (s *streamer) responsesSlow(ev sse.Event) error {
	o, err := decodeObject([]byte(ev.Data))
	if err != nil {
		return s.opaque(ev)
	}
	if s.inspects() {
		if err := caseClash(o, responsesEventKeys, "an event's"); err != nil {
			return err
		}
		if err := plainIndexes(o); err != nil {
			return err
		}
	}
	typ, _ := o["type"].(string)
	evKind := responsesKind(ev.Type, o)
	if typ == "" {
		typ = ev.Type
	}
	// With masking on every event goes out as it was read and masked (see
	// chat).
	s.dirty = s.m.Enabled()
	s.respType = s.respType || ev.Type != ""
	if seq, ok := o["sequence_number"]; ok {
		s.seq, s.seqTok = seq, s.seqTok[:0]
	}
	itemID, _ := o["item_id"].(string)
	if oi, ok := o["output_index"]; ok && itemID != "" {
		if !s.inspects() {
			s.outIdx[itemID] = oi
		} else if err := s.placeItem(itemID, outIndex(oi)); err != nil {
			return err
		}
	}
	outIdx := outIndex(o["output_index"])
	rest, _ := strings.CutPrefix(typ, "response.")
	switch {
	case strings.HasSuffix(rest, ".delta") && textDeltaKind(strings.TrimSuffix(rest, ".delta")) && isString(o["delta"]):
		// Known kinds (output_text, function_call_arguments, ...) and any
		// other text the API streams so (code_interpreter_call_code,
		// mcp_call_arguments, ...): one mask stream per field.
		kind := strings.TrimSuffix(rest, ".delta")
		d := o["delta"].(string)
		if n, ok := o["output_index"].(json.Number); ok {
			if err := s.indexItem(string(n), itemID); err != nil {
				return err
			}
		}
		out, err := s.write(respKey(itemID, outIdx, kind, partIndex(o, kind)), d)
		if err != nil {
			return err
		}
		o["delta"] = out
		s.stripEventLogprobs(o)
		s.maskEvent(o, func(k string) bool { return k == "delta" })
		return s.emitKind(evKind, ev, o, s.dirty || out != d)

	case rest == "shell_call_output_content.delta" && obj(o["delta"]) != nil:
		// A command's output, as {"stdout": ..., "stderr": ...} pieces the
		// SDKs append per command_index: each stream a field of its own.
		delta := obj(o["delta"])
		for _, member := range shellOutputs {
			t, ok := delta[member].(string)
			if !ok {
				continue
			}
			kind := kindShellOutput + member
			out, err := s.write(respKey(itemID, outIdx, kind, partIndex(o, kind)), t)
			if err != nil {
				return err
			}
			delta[member], s.dirty = out, s.dirty || out != t
		}
		s.maskEvent(delta, func(m string) bool { return isString(delta[m]) && slices.Contains(shellOutputs, m) })
		s.maskEvent(o, func(m string) bool { return m == "delta" })
		return s.emitKind(evKind, ev, o, s.dirty)

	case rest == "shell_call_output_content.done":
		// A command's output ends: its stdout and stderr fields.
		var ks [2]textKey
		for i, member := range shellOutputs {
			kind := kindShellOutput + member
			ks[i] = respKey(itemID, outIdx, kind, partIndex(o, kind))
			if err := s.markEnded(ks[i]); err != nil {
				return err
			}
		}
		if err := s.flushResponses(ev, o, func(x textKey) bool { return x == ks[0] || x == ks[1] }); err != nil {
			return err
		}
		s.maskEvent(o, nil)
		return s.emitKind(evKind, ev, o, s.dirty)

	case strings.HasSuffix(rest, ".done") && textDeltaKind(strings.TrimSuffix(rest, ".done")):
		kind := strings.TrimSuffix(rest, ".done")
		k := respKey(itemID, outIdx, kind, partIndex(o, kind))
		if err := s.markEnded(k); err != nil { // before anything of the event goes out
			return err
		}
		if err := s.flushResponses(ev, o, func(x textKey) bool { return x == k }); err != nil {
			return err
		}
		s.stripEventLogprobs(o)
		if s.inspects() {
			// The whole text again (text, arguments, code, ...), and
			// any other string of the event.
			full := func(t string) string { return s.maskFull(k, t) }
			fa := s.maskArgsOnce
			if argumentKinds[k.kind] {
				fa = full
			}
			maskStringsKeys(o, full, s.maskOnce, fa, nil)
		}
		return s.emitKind(evKind, ev, o, s.dirty)

	case rest == kindShellCommand+".added":
		// A command's text as added is its first delta (see startText).
		k := respKey(itemID, outIdx, kindShellCommand, partIndex(o, kindShellCommand))
		if err := s.startText(k, o, "command"); err != nil {
			return err
		}
		s.maskEvent(o, func(m string) bool { return m == "command" && isString(o[m]) })
		return s.emitKind(evKind, ev, o, s.dirty)

	case rest == "content_part.added" || rest == "content_part.done" ||
		rest == "reasoning_summary_part.added" || rest == "reasoning_summary_part.done":
		part := obj(o["part"])
		pt, _ := part["type"].(string)
		kind := partKinds[pt]
		if kind == "" {
			s.maskEvent(o, nil)
			return s.emitKind(evKind, ev, o, s.dirty)
		}
		k := respKey(itemID, outIdx, kind, partIndex(o, kind))
		if strings.HasSuffix(rest, ".done") {
			if err := s.markEnded(k); err != nil {
				return err
			}
			if err := s.flushResponses(ev, o, func(x textKey) bool { return x == k }); err != nil {
				return err
			}
			str(part, "text", func(t string) string { return s.maskFull(k, t) })
			str(part, "refusal", func(t string) string { return s.maskFull(k, t) })
		} else if err := s.startText(k, part, "text", "refusal"); err != nil {
			return err
		}
		if s.m.Enabled() && len(arr(part["logprobs"])) > 0 {
			part["logprobs"], s.dirty = []any{}, true
		}
		// The rest of the part and of the event; text or a refusal that is
		// not a string is masked whole here.
		s.maskEvent(part, func(k string) bool { return (k == "text" || k == "refusal") && isString(part[k]) })
		s.maskEvent(o, func(k string) bool { return k == "part" })
		return s.emitKind(evKind, ev, o, s.dirty)

	case rest == "output_item.added" || rest == "output_item.done":
		item := obj(o["item"])
		id, _ := item["id"].(string)
		if err := s.itemIDFits(id); err != nil {
			return err
		}
		if rest == "output_item.done" {
			if err := s.markItemEnded(id, outIdx, item); err != nil {
				return err
			}
			// The item's fields: by its id, and those streamed without
			// one under its output_index.
			if err := s.flushResponses(ev, o, func(x textKey) bool {
				return x.item == id && x.out == "" || x.item == "" && x.out != "" && x.out == outIdx
			}); err != nil {
				return err
			}
		} else {
			if id != "" && outIdx != "" && s.inspects() {
				// Where the tails of the texts it starts with go.
				if err := s.placeItem(id, outIdx); err != nil {
					return err
				}
			}
			if t, _ := item["type"].(string); t == "function_call" {
				name, _ := item["name"].(string)
				s.sum.tool(name, "…")
			}
			// Text an item starts with is its fields' first deltas: the
			// SDKs append the deltas that follow to it.
			var werr error
			walkOutputItem(item, func(kind string, idx int, t string) string {
				if werr != nil {
					return t
				}
				out, err := s.firstText(respKey(id, outIdx, kind, idx), t)
				werr = err
				return out
			})
			if werr != nil {
				return werr
			}
		}
		s.maskItem(id, outIdx, item)
		if rest == "output_item.done" {
			delete(s.outIdx, id)
		}
		// The rest of the event, and an item that is not an object, whole.
		s.maskEvent(o, func(k string) bool { return k == "item" && item != nil })
		return s.emitKind(evKind, ev, o, s.dirty)

	case rest == "completed" || rest == "incomplete" || rest == "failed" ||
		rest == "created" || rest == "in_progress" || rest == "queued":
		resp := obj(o["response"])
		if rest == "completed" || rest == "incomplete" || rest == "failed" {
			if err := s.flushResponses(ev, o, func(textKey) bool { return true }); err != nil {
				return err
			}
			if u, ok := parseUsage(resp["usage"]); ok {
				s.res.Usage, s.res.HasUsage = u, true
			}
		}
		items, isList := resp["output"].([]any)
		for i, v := range items {
			item := obj(v)
			if item == nil {
				items[i] = s.maskEvent(v, nil) // an item of another type, whole
				continue
			}
			id, _ := item["id"].(string)
			if err := s.itemIDFits(id); err != nil {
				return err
			}
			s.maskItem(id, strconv.Itoa(i), item) // a response's output i is its output_index i
		}
		// output_text repeats the message text: mask it, never count it.
		str(resp, "output_text", func(t string) string {
			out, _ := s.m.Mask(t)
			s.dirty = s.dirty || out != t
			return out
		})
		// Everything else of the response (error, incomplete_details,
		// metadata, echoed request fields) and of the event; output that
		// is not a list, and a response that is not an object, whole.
		s.maskEvent(resp, func(k string) bool { return k == "output" && isList || k == "output_text" && isString(resp[k]) })
		s.maskEvent(o, func(k string) bool { return k == "response" && resp != nil })
		if rest == "completed" && s.sum.b.Len() == 0 && len(s.sum.tools) == 0 {
			s.sum.outputItems(items)
		}
		return s.emitKind(evKind, ev, o, s.dirty)
	}
	// Any other event (annotations, web search and MCP progress, errors,
	// events added to the API later): every non-structural string.
	s.maskEvent(o, nil)
	return s.emitKind(evKind, ev, o, s.dirty)
}

// responsesFast is responses' fast path for the event most of a Responses
// stream is made of, response.output_text.delta, read without decoding it
// into maps: the delta is masked as the generic path masks it and spliced
// back in place, every other member left as written (all structural: the
// type, ids and indexes, an empty logprobs list, obfuscation). Any other
// member, a duplicate, or another shape takes the generic path (done is
// false).
func (s *streamer) responsesFast(ev sse.Event) (done bool, err error) {
	if !fastPaths || !utf8.ValidString(ev.Data) {
		return false, nil
	}
	p := &jscan{s: ev.Data}
	p.ws()
	if p.peek() != '{' {
		return false, nil
	}
	var typ, itemID, delta, seqAt text
	var seq, outIdx string
	contentIdx := 0
	var seen uint8 // one bit per member read: a duplicate takes the generic path
	ok := p.object(func(key string) bool {
		bit := uint8(0)
		switch key {
		case "type":
			bit = 1
		case "item_id":
			bit = 2
		case "delta":
			bit = 4
		case "obfuscation":
			bit = 8
		case "logprobs":
			bit = 16
		case "sequence_number":
			bit = 32
		case "output_index":
			bit = 64
		case "content_index":
			bit = 128
		}
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		var ok bool
		switch key {
		case "type":
			typ, ok = p.strValue()
		case "item_id":
			itemID, ok = p.strValue()
		case "delta":
			delta, ok = p.strValue()
		case "obfuscation":
			_, ok = p.strValue()
		case "logprobs":
			ok = p.emptyArray()
		case "sequence_number", "output_index", "content_index":
			at := p.i
			tok, integer, okN := p.number()
			if !okN || !integer || key != "sequence_number" && !plainIndex(tok) {
				return false // the generic path judges it
			}
			switch key {
			case "sequence_number":
				seq, seqAt = tok, text{raw: tok, off: at}
			case "output_index":
				outIdx = tok
			default:
				n, err := strconv.Atoi(tok)
				if err != nil {
					return false
				}
				contentIdx = n
			}
			ok = true
		}
		return ok
	})
	if !ok || !p.end() || typ.val != "response.output_text.delta" || seen&4 == 0 || len(itemID.val) > maxItemID {
		return false, nil // a long item id: the generic path refuses it
	}
	// What the generic path records of any event.
	s.dirty = s.m.Enabled()
	s.respType = s.respType || ev.Type != ""
	// What outlives the event is copied (its data is lent: Relay.Step).
	if seq != "" {
		s.seq, s.seqTok = nil, append(s.seqTok[:0], seq...)
	}
	if outIdx != "" && itemID.val != "" {
		if err := s.placeItem(itemID.val, outIdx); err != nil {
			return true, err
		}
	}
	if err := s.indexItem(outIdx, itemID.val); err != nil {
		return true, err
	}
	out, err := s.write(respKey(itemID.val, outIdx, kindOutputText, contentIdx), delta.val)
	if err != nil {
		return true, err
	}
	s.reps = s.reps[:0]
	if out != delta.val {
		s.reps = append(s.reps, replacement{t: delta, val: out})
	}
	if renum, ok := s.renumbered(seq); ok {
		// After extra events the proxy added: numbered on from them.
		r := replacement{t: seqAt, val: renum, number: true}
		if len(s.reps) > 0 && seqAt.off < delta.off {
			s.reps = append([]replacement{r}, s.reps...)
		} else {
			s.reps = append(s.reps, r)
		}
	}
	if len(s.reps) > 0 {
		ev.Data = s.spliceForEmit(ev.Data, s.reps)
	}
	s.next = EventPlain // no "error", no other "type": only its name may end the stream
	if TerminalType(ev.Type) {
		s.next = EventTerminal
	}
	return true, s.emit(ev)
}

// spliceForEmit is data with reps applied, in a buffer the streamer
// reuses for every event (streams splice nearly every delta): only for an
// event emitted at once, as emit copies its data into the SSE frame and
// nothing keeps the event past it. The next call overwrites the bytes.
func (s *streamer) spliceForEmit(data string, reps []replacement) string {
	if cap(s.spliced) > 64<<10 {
		s.spliced = nil // one huge event does not pin its buffer for the stream's life
	}
	s.spliced = appendSplice(s.spliced[:0], data, reps)
	return unsafe.String(unsafe.SliceData(s.spliced), len(s.spliced))
}

func isString(v any) bool {
	_, ok := v.(string)
	return ok
}

func (s *streamer) maskItem(id, outIdx string, item map[string]any) {
	if stripLogprobs(item, s.m.Enabled()) {
		s.dirty = true
	}
	walkOutputItem(item, func(kind string, idx int, t string) string {
		return s.maskFull(respKey(id, outIdx, kind, idx), t)
	})
	// Every other string of the item (code, commands, queries, tool
	// lists, outputs, revised prompts, annotations); masked text is not
	// found again.
	s.maskEvent(item, nil)
}

func (s *streamer) stripEventLogprobs(o map[string]any) {
	if s.m.Enabled() && len(arr(o["logprobs"])) > 0 {
		o["logprobs"], s.dirty = []any{}, true
	}
}

// flushResponses releases the tails of the selected fields, each as an extra
// response.<kind>.delta event before the event ev (o) that ends them.
func (s *streamer) flushResponses(ev sse.Event, o map[string]any, keep func(textKey) bool) error {
	for _, k := range s.pending(keep) {
		tail := s.finish(k)
		if tail == "" {
			continue
		}
		typ := "response." + k.kind + ".delta"
		d := map[string]any{"delta": tail}
		if member, ok := strings.CutPrefix(k.kind, kindShellOutput); ok {
			// The output's tail in the object its deltas came in.
			typ, d["delta"] = "response.shell_call_output_content.delta", map[string]any{member: tail}
		}
		d["type"] = typ
		switch {
		case k.item != "":
			d["item_id"] = k.item
			if oi, ok := s.outIdx[k.item]; ok {
				d["output_index"] = oi
			}
		case k.out != "":
			d["output_index"] = json.Number(k.out) // streamed without an item_id: none is made up
		default:
			d["item_id"] = ""
		}
		if m := partMember(k.kind); m != "" {
			d[m] = k.idx // as the field's deltas carried it: clients place the tail by it
		}
		if k.kind == kindOutputText {
			d["logprobs"] = []any{}
		}
		if seq := s.extraSeq(o); seq != nil {
			d["sequence_number"] = seq
		}
		out := sse.Event{}
		if s.respType {
			out.Type = typ
		}
		s.next = EventPlain // a delta pamctl wrote
		if err := s.emitObj(out, d, true); err != nil {
			return err
		}
	}
	return nil
}
