package cli

import (
	"log/slog"
	"sync"
	"time"
)

// forgedLogEvery spaces the log lines of forged records of one kind: a
// client can make the server read a forged record in a loop (a session
// on every call), and the log must not flood.
const forgedLogEvery = time.Minute

// forgedRecords is told of every record the store refuses because its
// authenticator is missing or wrong (store.RecordKey.OnForged, on both
// backends): it counts each (pamctl_store_forged_records_total, when
// metrics are on) and logs an error, at most one line per kind every
// forgedLogEvery, saying how many it left out since the last one.
type forgedRecords struct {
	log *slog.Logger
	now func() time.Time

	mu         sync.Mutex
	count      func(kind string) // the metric; nil without metrics
	last       map[string]time.Time
	suppressed map[string]int
}

func newForgedRecords(log *slog.Logger) *forgedRecords {
	return &forgedRecords{log: log, now: time.Now, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// countWith starts counting each forged record with count.
func (f *forgedRecords) countWith(count func(kind string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count = count
}

// observe is the record key's OnForged: kind is bounded by the store,
// err names the record (its kind and id, never its content).
func (f *forgedRecords) observe(kind string, err error) {
	f.mu.Lock()
	if f.count != nil {
		f.count(kind)
	}
	now := f.now()
	if last, ok := f.last[kind]; ok && now.Sub(last) < forgedLogEvery {
		f.suppressed[kind]++
		f.mu.Unlock()
		return
	}
	f.last[kind] = now
	left := f.suppressed[kind]
	f.suppressed[kind] = 0
	f.mu.Unlock()
	f.log.Error("store record failed its authenticator: someone wrote the store without the master key, and the record was refused. Stop pamctl, restore the store from a backup (bbolt: a copy of pamctl.db; etcd: an etcd snapshot), and run `pamctl audit verify`",
		"kind", kind, "err", err.Error(), "not_logged_since_last", left)
}
