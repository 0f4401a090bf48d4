package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotFound is returned by Get for a seq that is not stored.
var ErrNotFound = errors.New("audit: event not found")

// Sink records events. It is all the broker and the proxy need.
//
// Append normalizes e (see Event.Normalize) and, in durable mode, returns
// only after the event is committed and fsynced, with e.Seq, e.PrevHash and
// e.Hash set. In async mode it returns once the event is queued (those
// fields stay zero) and a crash may lose queued events.
type Sink interface {
	Append(ctx context.Context, e *Event) error
}

// Log is the whole audit trail: what the CLI and the audit API use.
type Log interface {
	Sink
	// Range calls fn for each stored event with seq >= fromSeq in seq order
	// until fn returns false. Use Filter.Match inside fn to select.
	Range(ctx context.Context, fromSeq uint64, fn func(Event) bool) error
	// Last returns the last n events in seq order.
	Last(ctx context.Context, n int) ([]Event, error)
	// Get returns one event or an error matching ErrNotFound.
	Get(ctx context.Context, seq uint64) (Event, error)
	// Subscribe follows the log from fromSeq (see Broadcaster.Subscribe).
	Subscribe(ctx context.Context, fromSeq uint64) *Subscription
	// Head describes the chain: first and last event, signed head, anchor.
	Head(ctx context.Context) (Status, error)
	// SignHead signs the current head now (nil when the log is empty or
	// has no signer) and returns the latest signed head.
	SignHead(ctx context.Context) (*SignedHead, error)
	// Prune deletes the oldest events, those before the first event at or
	// after before, and anchors the chain at the cut.
	Prune(ctx context.Context, before time.Time) (PruneResult, error)
	// Verify checks the stored chain (see Verify).
	Verify(ctx context.Context, keys KeyFunc) (Report, error)
	// Export writes the chain as JSON Lines (see WriteJSONL).
	Export(ctx context.Context, w io.Writer) error
	// ExportRange writes the contiguous events from since to until (zero
	// times leave an end open), verifiable offline as a piece of the chain.
	ExportRange(ctx context.Context, w io.Writer, since, until time.Time) error
}

// Status describes a stored chain.
type Status struct {
	// First is the first retained seq (0 when empty); Last the last event.
	First uint64 `json:"first"`
	Last  Link   `json:"last"`
	// Head is the latest signed head, Anchor the retention anchor.
	Head   *SignedHead `json:"head,omitempty"`
	Anchor *Anchor     `json:"anchor,omitempty"`
}

// PruneResult says what Prune did.
type PruneResult struct {
	// Deleted counts deleted events; zero means nothing was old enough.
	Deleted uint64 `json:"deleted"`
	// Anchor is the new retention anchor (nil when nothing was deleted).
	Anchor *Anchor `json:"anchor,omitempty"`
	// AnchorSeq is the seq of the audit.anchor event recording it.
	AnchorSeq uint64 `json:"anchor_seq,omitempty"`
}

// SyncMode is the audit.sync setting.
type SyncMode string

// Sync modes.
const (
	// SyncDurable: Append returns after the event is fsynced. Default.
	SyncDurable SyncMode = "durable"
	// SyncAsync: Append returns once the event is queued in memory; one
	// writer commits the queue in large transactions. Faster, but events
	// still queued are lost if the process crashes.
	SyncAsync SyncMode = "async"
)

// ParseSyncMode parses the audit.sync setting ("" means durable).
func ParseSyncMode(s string) (SyncMode, error) {
	switch SyncMode(s) {
	case "", SyncDurable:
		return SyncDurable, nil
	case SyncAsync:
		return SyncAsync, nil
	}
	return "", fmt.Errorf("audit: sync must be %q or %q, not %q", SyncDurable, SyncAsync, s)
}
