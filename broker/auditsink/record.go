package auditsink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// Record is one item a sink receives: an event of the trail, a signed
// head covering the events before it, or the stand-in of an event too
// large for the sink. Exactly one field is set.
type Record struct {
	Event   *audit.Event
	Head    *audit.SignedHead
	StandIn *StandIn
}

// TypeOversize is the type of a stand-in record (StandIn), its syslog
// MSGID and, as pamctl:audit.oversize, its HEC sourcetype.
const TypeOversize = "audit.oversize"

// StandIn is what a sink receives in place of an event its transport
// cannot carry (more than a UDP datagram holds; a collector that answers
// 413, 400 or 422 to the event alone): a bounded record naming the event, so a
// receiver sees the gap and can read the event with
// `pamctl audit show SEQ -o json`. Its line starts with {"seq": like an
// event's; its type is audit.oversize, and its hash is the real event's,
// which the stand-in itself does not hash to.
type StandIn struct {
	Seq       uint64    `json:"seq"`
	Type      string    `json:"type"` // TypeOversize
	Time      time.Time `json:"time"` // the event's
	EventType string    `json:"event_type"`
	Code      string    `json:"code,omitempty"`
	Hash      string    `json:"hash"`
	// Size is the bytes the event took for this sink; Limit what the sink
	// carries (0: unknown, the collector refused it).
	Size   int    `json:"size"`
	Limit  int    `json:"limit,omitempty"`
	Reason string `json:"reason"`
}

// standInFor builds the stand-in of e, which took size bytes for a sink
// that carries limit (0: unknown).
func standInFor(e *audit.Event, size, limit int, why string) *StandIn {
	return &StandIn{Seq: e.Seq, Type: TypeOversize, Time: e.Time, EventType: bounded(string(e.Type), 64), Code: bounded(e.Code, 32),
		Hash: bounded(e.Hash, 64), Size: size, Limit: limit,
		Reason: why + "; read it with: pamctl audit show " + strconv.FormatUint(e.Seq, 10) + " -o json"}
}

// bounded is s in printable ASCII, at most n bytes ("" stays "").
func bounded(s string, n int) string {
	if s == "" {
		return ""
	}
	return printASCII(s, n)
}

// standInReporter is a target that sends stand-ins: takeStandIns returns
// those of the last Deliver (and forgets them), for the shipper to count
// and log.
type standInReporter interface {
	takeStandIns() []StandIn
}

// headLine is the export format's head line: {"head":{...}}.
type headLine struct {
	Head *audit.SignedHead `json:"head"`
}

// Line is the record as one JSON line without the newline: an event exactly
// as the chain stores it (json.Marshal of a sealed event is its stored
// line), or a head as the export's {"head":{...}} line.
func (r Record) Line() ([]byte, error) {
	var b []byte
	var err error
	switch {
	case r.Event != nil:
		b, err = json.Marshal(r.Event)
	case r.Head != nil:
		b, err = json.Marshal(headLine{r.Head})
	case r.StandIn != nil:
		b, err = json.Marshal(r.StandIn)
	default:
		return nil, fmt.Errorf("auditsink: empty record")
	}
	if err != nil {
		return nil, fmt.Errorf("auditsink: encode record: %w", err)
	}
	return b, nil
}

// Seq is the event's (or its stand-in's) seq, or the seq a head covers.
func (r Record) Seq() uint64 {
	if r.Event != nil {
		return r.Event.Seq
	}
	if r.Head != nil {
		return r.Head.Seq
	}
	if r.StandIn != nil {
		return r.StandIn.Seq
	}
	return 0
}

// Kind is the record's type name: the event type, "audit.head" or
// "audit.oversize".
func (r Record) Kind() string {
	if r.Event != nil {
		return string(r.Event.Type)
	}
	if r.StandIn != nil {
		return TypeOversize
	}
	return TypeHead
}

// TypeHead names a signed-head record in syslog MSGIDs and HEC sourcetypes.
const TypeHead = "audit.head"

// time is when the record's event happened (or its head was signed).
func (r Record) time() time.Time {
	switch {
	case r.Event != nil:
		return r.Event.Time
	case r.StandIn != nil:
		return r.StandIn.Time
	case r.Head != nil:
		return r.Head.Time
	}
	return time.Now()
}
