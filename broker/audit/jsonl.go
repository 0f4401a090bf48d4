package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"time"
)

// Export format (JSON Lines, UTF-8, "\n" after every line):
//
//	{"anchor":{...}}   optional first line: the retention anchor
//	{"range":{...}}    or, for an export of a time range, where it starts:
//	                   the seq and hash of the event before the first one
//	{"seq":1,...}      one line per event, exactly as stored (hash last)
//	{"head":{...}}     optional last line: the latest signed head (a ranged
//	                   export carries it only when the range reaches it)
//
// Event lines are the bytes the chain hashes (plus the hash member), so an
// offline verifier needs no JSON canonicalization: see docs/audit.md.

// MaxLineBytes bounds one line of an export.
const MaxLineBytes = 4 << 20

type anchorLine struct {
	Anchor *Anchor `json:"anchor"`
}

type rangeLine struct {
	Range *Link `json:"range"`
}

type headLine struct {
	Head *SignedHead `json:"head"`
}

// JSONLWriter streams an export. Call WriteAnchor (if any) first, then
// WriteLine or WriteEvent for each event, then WriteHead (if any), then
// Flush.
type JSONLWriter struct {
	w      *bufio.Writer
	events bool
	head   bool
}

// NewJSONLWriter returns a writer that buffers into w.
func NewJSONLWriter(w io.Writer) *JSONLWriter {
	return &JSONLWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// WriteAnchor writes the anchor line; it must come first.
func (j *JSONLWriter) WriteAnchor(a *Anchor) error {
	if j.events || j.head {
		return errors.New("audit: export: anchor after events")
	}
	return j.writeJSON(anchorLine{a})
}

// WriteRange writes the start of a ranged export (the link before its first
// event); it must come first.
func (j *JSONLWriter) WriteRange(start Link) error {
	if j.events || j.head {
		return errors.New("audit: export: range after events")
	}
	return j.writeJSON(rangeLine{&start})
}

// WriteLine writes one stored event line as is.
func (j *JSONLWriter) WriteLine(line []byte) error {
	if j.head {
		return errors.New("audit: export: event after head")
	}
	if !bytes.HasPrefix(line, []byte(seqPrefix)) || bytes.IndexByte(line, '\n') >= 0 {
		return fmt.Errorf("audit: export: not an event line: %s", quoteShort(line))
	}
	j.events = true
	j.w.Write(line)
	return j.w.WriteByte('\n')
}

// WriteEvent writes a sealed event (Hash set). json.Marshal of a sealed
// event is byte for byte the stored line.
func (j *JSONLWriter) WriteEvent(e *Event) error {
	if e.Hash == "" {
		return errors.New("audit: export: event has no hash")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return j.WriteLine(b)
}

// WriteHead writes the signed head line; nothing may follow it.
func (j *JSONLWriter) WriteHead(h *SignedHead) error {
	if j.head {
		return errors.New("audit: export: second head")
	}
	j.head = true
	return j.writeJSON(headLine{h})
}

func (j *JSONLWriter) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}

// Flush writes any buffered data to the underlying writer.
func (j *JSONLWriter) Flush() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

// WriteJSONL writes a complete export: anchor (nil for none), the stored
// event lines in seq order, head (nil for none).
func WriteJSONL(w io.Writer, anchor *Anchor, lines iter.Seq2[[]byte, error], head *SignedHead) error {
	j := NewJSONLWriter(w)
	if anchor != nil {
		if err := j.WriteAnchor(anchor); err != nil {
			return err
		}
	}
	for line, err := range lines {
		if err != nil {
			return err
		}
		if err := j.WriteLine(line); err != nil {
			return err
		}
	}
	if head != nil {
		if err := j.WriteHead(head); err != nil {
			return err
		}
	}
	return j.Flush()
}

// ThroughHead yields the lines of lines (stored lines in seq order) up to
// and including the event at head's seq, all of them when head is nil. A
// store that signs a head just before it reads an export ends the export
// there, so events appended in between are left for the next export and
// every exported event is covered by the signature (audit verify --file
// --signed fails an export with events after its head).
func ThroughHead(lines iter.Seq2[[]byte, error], head *SignedHead) iter.Seq2[[]byte, error] {
	if head == nil {
		return lines
	}
	return func(yield func([]byte, error) bool) {
		for line, err := range lines {
			if err == nil {
				seq, ok := lineSeq(line)
				if !ok {
					err = fmt.Errorf("audit: export: not an event line: %s", quoteShort(line))
				} else if seq > head.Seq {
					return
				}
			}
			if !yield(line, err) || err != nil {
				return
			}
		}
	}
}

// lineSeq reads the seq a stored event line opens with.
func lineSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(seqPrefix))
	if !ok {
		return 0, false
	}
	n := bytes.IndexByte(rest, ',')
	if n <= 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	return seq, err == nil
}

// WriteJSONLRange writes the events of lines (stored lines in seq order)
// from the first one at or after since up to the last one before until (a
// zero until leaves that end open). The export starts with anchor when the
// range starts at the first line, or with a range line naming the event
// before it; it ends with head when the range reaches it. So any range
// verifies offline as a consistent piece of the chain (VerifyJSONL), and
// one that reaches the head is signature-checked too. Every store's
// ExportRange is this over its own lines.
func WriteJSONLRange(w io.Writer, anchor *Anchor, lines iter.Seq2[[]byte, error], head *SignedHead, since, until time.Time) error {
	jw := NewJSONLWriter(w)
	var before Link // the event before the range, if any
	started := false
	var first, last uint64
	for line, err := range lines {
		if err != nil {
			return err
		}
		var at struct {
			Seq  uint64    `json:"seq"`
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(line, &at); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		// Once started the range stays contiguous, whatever the clock did.
		if !started && at.Time.Before(since) {
			before = Link{Seq: at.Seq, Hash: StoredHash(line)}
			continue
		}
		if !until.IsZero() && !at.Time.Before(until) {
			break
		}
		if !started {
			started, first = true, at.Seq
			switch {
			case before.Seq != 0:
				err = jw.WriteRange(before)
			case anchor != nil:
				err = jw.WriteAnchor(anchor)
			}
			if err != nil {
				return err
			}
		}
		if err := jw.WriteLine(line); err != nil {
			return err
		}
		last = at.Seq
	}
	if started && head != nil && head.Seq >= first && head.Seq <= last {
		if err := jw.WriteHead(head); err != nil {
			return err
		}
	}
	return jw.Flush()
}

// StoredHash is the hash member of a stored line (its last member, as
// Draft.Seal writes it), "" for a line too short to hold one.
func StoredHash(line []byte) string {
	const n = hexLen + len(`"}`)
	if len(line) < n {
		return ""
	}
	return string(line[len(line)-n : len(line)-2])
}

// VerifyJSONL verifies an export read from r, offline. It returns the first
// break as a *BreakError; I/O and format errors are returned as they are.
func VerifyJSONL(r io.Reader, keys KeyFunc) (Report, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var (
		v    *Verifier
		head *SignedHead
		long []byte
		n    int
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(long) <= MaxLineBytes {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			if len(long) > MaxLineBytes {
				return Report{}, fmt.Errorf("audit: export line %d: longer than %d bytes", n+1, MaxLineBytes)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return Report{}, fmt.Errorf("audit: read export: %w", err)
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(line) > 0 {
			n++
			if head != nil {
				return Report{}, fmt.Errorf("audit: export line %d: data after the head line", n)
			}
			switch {
			case bytes.HasPrefix(line, []byte(`{"anchor":`)):
				if v != nil {
					return Report{}, fmt.Errorf("audit: export line %d: anchor must be the first line", n)
				}
				var al anchorLine
				if err := json.Unmarshal(line, &al); err != nil || al.Anchor == nil {
					return Report{}, fmt.Errorf("audit: export line %d: bad anchor line", n)
				}
				v = NewVerifier(al.Anchor, keys)
			case bytes.HasPrefix(line, []byte(`{"range":`)):
				if v != nil {
					return Report{}, fmt.Errorf("audit: export line %d: range must be the first line", n)
				}
				var rl rangeLine
				if err := json.Unmarshal(line, &rl); err != nil || rl.Range == nil {
					return Report{}, fmt.Errorf("audit: export line %d: bad range line", n)
				}
				v = NewRangeVerifier(*rl.Range, keys)
			case bytes.HasPrefix(line, []byte(`{"head":`)):
				var hl headLine
				if err := json.Unmarshal(line, &hl); err != nil || hl.Head == nil {
					return Report{}, fmt.Errorf("audit: export line %d: bad head line", n)
				}
				head = hl.Head
			default:
				if v == nil {
					v = NewVerifier(nil, keys)
				}
				if err := v.Add(line); err != nil {
					return v.Finish(nil)
				}
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	if v == nil {
		v = NewVerifier(nil, keys)
	}
	return v.Finish(head)
}
