package auditsink

import (
	"encoding/json"
	"fmt"

	"github.com/pamctl/pamctl/broker/audit"
)

// Record is one item a sink receives: an event of the trail or a signed
// head covering the events before it. Exactly one field is set.
type Record struct {
	Event *audit.Event
	Head  *audit.SignedHead
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
	default:
		return nil, fmt.Errorf("auditsink: empty record")
	}
	if err != nil {
		return nil, fmt.Errorf("auditsink: encode record: %w", err)
	}
	return b, nil
}

// Seq is the event's seq, or the seq a head covers.
func (r Record) Seq() uint64 {
	if r.Event != nil {
		return r.Event.Seq
	}
	if r.Head != nil {
		return r.Head.Seq
	}
	return 0
}

// Kind is the record's type name: the event type, or "audit.head".
func (r Record) Kind() string {
	if r.Event != nil {
		return string(r.Event.Type)
	}
	return TypeHead
}

// TypeHead names a signed-head record in syslog MSGIDs and HEC sourcetypes.
const TypeHead = "audit.head"
