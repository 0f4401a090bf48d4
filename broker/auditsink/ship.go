package auditsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// Source is the part of the audit log a shipper reads.
type Source interface {
	Range(ctx context.Context, fromSeq uint64, fn func(audit.Event) bool) error
	Head(ctx context.Context) (audit.Status, error)
	Subscribe(ctx context.Context, fromSeq uint64) *audit.Subscription
}

// Cursor is how far a sink got: the last event and the last signed head it
// acknowledged.
type Cursor struct {
	Seq     uint64    `json:"seq"`
	HeadSeq uint64    `json:"head_seq"`
	Updated time.Time `json:"updated"`
	// MAC authenticates the cursor to its sink under Options.CursorKey
	// (SealCursor); empty without a key and in cursors written before
	// cursors were authenticated.
	MAC string `json:"mac,omitempty"`
}

// CursorStore persists cursors by sink name (store.DB implements it).
// Deleting a name that has no cursor is no error.
type CursorStore interface {
	SinkCursors(ctx context.Context) (map[string]Cursor, error)
	SaveSinkCursor(ctx context.Context, name string, c Cursor) error
	DeleteSinkCursor(ctx context.Context, name string) error
}

// Target delivers records to one destination. Deliver returns nil only when
// every record was handed over (written and synced, acknowledged); on error
// the whole batch is sent again later, so a target must tolerate records it
// already has.
type Target interface {
	Deliver(ctx context.Context, recs []Record) error
	Close() error
}

// Status is what `pamctl audit sinks` shows for one sink.
type Status struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Destination string `json:"destination"`
	// Anchor is true for audit.anchor, which receives signed heads only.
	Anchor bool   `json:"anchor,omitempty"`
	Cursor Cursor `json:"cursor"`
	// Last is the trail's last seq when the shipper last looked; Lag the
	// events (heads only: for the anchor, events after the last anchored
	// head) not yet delivered.
	Last           uint64    `json:"last"`
	Lag            uint64    `json:"lag"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	LastDeliveryAt time.Time `json:"last_delivery_at,omitzero"`
	// CursorError says why the stored cursor was not trusted when the
	// shipper started (past the end of the trail, a missing or wrong
	// authenticator) and that delivery restarted at the first retained
	// event; it stays until the next start. CursorNote says a cursor
	// without an authenticator was accepted (an upgrade).
	CursorError string `json:"cursor_error,omitempty"`
	CursorNote  string `json:"cursor_note,omitempty"`
	// Oversize counts the events sent as a stand-in record since the start
	// because they were too large for the sink (StandIn).
	Oversize uint64 `json:"oversize,omitempty"`
	// RecentStandIns counts the stand-ins among the last StandInWindow
	// events delivered: StandInAlarm or more is a collector that refuses
	// what events hold (a field mapping, a parser) while it takes pamctl's
	// stand-ins, or an agent making most of its events ones the sink
	// cannot take, so the SIEM receives little event content. A window,
	// not a run: an event taken whole now and then (the operator's own
	// audit.read) does not clear it.
	RecentStandIns uint64 `json:"recent_stand_ins,omitempty"`
	// Running is false when read from a stopped data dir.
	Running bool `json:"running"`
	// Standby: another replica leads (Options.Leader) and delivers; this
	// one delivers nothing and shows the shared cursor.
	Standby bool `json:"standby,omitempty"`
	// Since is when the shipper started.
	Since time.Time `json:"since,omitzero"`
}

// StandInAlarm is how many of the last StandInWindow events sent as
// stand-ins make the sink a Problem. One stand-in is an event the sink
// could not take (an agent's prompt a parser chokes on, an event too
// large); half of the last twenty is a collector that takes no event, or
// an agent writing most of its trail past the SIEM.
const (
	StandInAlarm  = 10
	StandInWindow = 20
)

// Problem is what readiness reports about the sink: its rejected stored
// cursor (CursorError), StandInAlarm stand-ins among the last
// StandInWindow events, or Stalled.
func (s Status) Problem(now time.Time, budget time.Duration) error {
	if s.CursorError != "" {
		return errors.New("audit sink " + s.Name + ": " + s.CursorError)
	}
	if s.CursorNote != "" {
		// Expected once, on the first start after an upgrade from a pamctl
		// that did not authenticate cursors; at any other time someone
		// stripped them (and may have moved them: that is not detectable).
		return errors.New("audit sink " + s.Name + ": " + s.CursorNote + "; expected only on the first start after upgrading from a pamctl that did not authenticate cursors, otherwise someone who can write the data dir stripped the authenticators and may have moved the cursor: check the sink for gaps against `pamctl audit export`")
	}
	if s.RecentStandIns >= StandInAlarm {
		return errors.New(standInRunMessage(s.Name, s.RecentStandIns))
	}
	return s.Stalled(now, budget)
}

func standInRunMessage(name string, n uint64) string {
	return fmt.Sprintf("audit sink %s: %d of the last %d events went as audit.oversize stand-ins: the collector refuses (400, 422, 413) or the sink cannot carry what events hold, so the SIEM receives no event content; check the sink's format and the collector's field mappings, parsing and size limits (the server log has each stand-in's reason), and read the events with `pamctl audit show SEQ -o json`", name, n, StandInWindow)
}

// Stalled reports a sink that has events to deliver and has delivered
// nothing for longer than budget (counted from its start when it never
// delivered); nil while it keeps up or is merely slow.
func (s Status) Stalled(now time.Time, budget time.Duration) error {
	if s.Lag == 0 || s.Standby {
		return nil
	}
	last := s.LastDeliveryAt
	if last.Before(s.Since) {
		last = s.Since
	}
	if idle := now.Sub(last); idle > budget {
		msg := fmt.Sprintf("audit sink %s is %d events behind and delivered nothing for %s", s.Name, s.Lag, idle.Round(time.Second))
		if s.LastError != "" {
			msg += "; last error: " + s.LastError
		}
		return errors.New(msg)
	}
	return nil
}

// Options configure a Manager.
type Options struct {
	Source  Source
	Cursors CursorStore
	Sinks   []SinkConfig
	Anchor  AnchorConfig
	// Leader, when set, says whether this replica delivers (replicas on
	// etcd share the trail and the cursors: only the elected one ships, or
	// every sink would get every event once per replica and the replicas
	// would move one cursor back and forth). A replica that starts leading
	// reads the cursors again first. Nil: always.
	Leader func() bool
	// CursorKey authenticates the cursors (derived from the master key for
	// CursorKeyPurpose): a stored cursor whose authenticator is missing or
	// wrong is not trusted (TrustCursor). Nil: cursors are neither
	// authenticated nor checked, only bounded by the trail.
	CursorKey []byte
	// LegacyCursorsEnded says this deployment is past the upgrade to
	// authenticated cursors (serve: its signing-key records already said
	// the store's records are sealed when it started, which only a pamctl
	// that authenticates cursors writes): a stored cursor without an
	// authenticator is then rejected, never taken for one an older pamctl
	// wrote, so stripping every cursor's authenticator no longer passes.
	LegacyCursorsEnded bool
	Logger             *slog.Logger
	// Poll is how often a shipper looks for new heads and events without
	// being woken (default 1s). MinBackoff and MaxBackoff bound the wait
	// after a failed delivery (defaults 1s and 1m).
	Poll, MinBackoff, MaxBackoff time.Duration
	// OnError is told about failed deliveries (for health), OnDelivered
	// about successful ones.
	OnError     func(name string, err error)
	OnDelivered func(name string)
	// OnCursor, when set, is told when a target's stored cursor was not
	// trusted at start (c.Rejected) or was taken for one written before
	// cursors were authenticated (c.Legacy): serve records it in the trail
	// (audit.cursor), the evidence of someone who wrote the data dir
	// or the cursors' store.
	OnCursor func(name string, c CursorCheck)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager runs one shipper per sink and one for the anchor.
type Manager struct {
	opts     Options
	shippers []*shipper
	// stored holds the cursors read at Start; each shipper checks its own
	// against the trail (TrustCursor) before its first delivery.
	stored   map[string]Cursor
	legacyMu sync.Mutex
	legacyOK bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Start builds every target and starts the shippers. A target that cannot
// be built (a bad ca_file) fails Start; a destination that is down does
// not: its shipper retries.
func Start(ctx context.Context, o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnError == nil {
		o.OnError = func(string, error) {}
	}
	if o.OnDelivered == nil {
		o.OnDelivered = func(string) {}
	}
	m := &Manager{opts: o}
	cursors, err := m.readCursors(ctx)
	if err != nil {
		return nil, fmt.Errorf("auditsink: read cursors: %w", err)
	}
	m.stored, m.legacyOK = cursors, !o.LegacyCursorsEnded && LegacyCursorsOK(cursors)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Manager, error) {
		for _, s := range m.shippers {
			s.target.Close()
		}
		m.cancel()
		return nil, err
	}
	for _, c := range o.Sinks {
		t, err := NewTarget(c)
		if err != nil {
			return fail(fmt.Errorf("audit sink %s: %w", c.ID(), err))
		}
		sh := m.newShipper(c.ID(), c.Type, c.Destination(), t, c.batchMax(), c.timeout(), false)
		sh.legacy = m.oldNames(c.formerIDs())
		m.shippers = append(m.shippers, sh)
	}
	if o.Anchor.Enabled() {
		t, err := NewAnchorTarget(o.Anchor)
		if err != nil {
			return fail(fmt.Errorf("audit anchor: %w", err))
		}
		typ, dest := o.Anchor.Destination()
		name := o.Anchor.Name()
		sh := m.newShipper(name, typ, dest, t, 1, DefaultTimeout, true)
		sh.legacy = m.oldNames(o.Anchor.formerNames())
		m.shippers = append(m.shippers, sh)
	}
	if len(m.shippers) == 0 {
		return m, nil
	}
	for _, s := range m.shippers {
		m.wg.Add(1)
		go s.run()
	}
	m.wg.Add(1)
	go m.doorbell()
	return m, nil
}

func (c SinkConfig) batchMax() int {
	if c.BatchMax > 0 {
		return c.BatchMax
	}
	return DefaultBatchMax
}

func (c SinkConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// doorbell wakes every shipper when events are appended.
func (m *Manager) doorbell() {
	defer m.wg.Done()
	for m.ctx.Err() == nil {
		st, err := m.opts.Source.Head(m.ctx)
		if err == nil {
			sub := m.opts.Source.Subscribe(m.ctx, st.Last.Seq+1)
			for range sub.C {
				m.ring()
			}
		}
		// Ended (slow, closed log, error): wake everyone, then resubscribe.
		m.ring()
		select {
		case <-m.ctx.Done():
		case <-time.After(m.opts.Poll):
		}
	}
}

func (m *Manager) ring() {
	for _, s := range m.shippers {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Close stops every shipper (a delivery in progress is cancelled) and
// closes the targets. Cursors stay where the last acknowledged delivery
// left them.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	var err error
	for _, s := range m.shippers {
		err = errors.Join(err, s.target.Close())
	}
	return err
}

// Status reports every sink, in configuration order (the anchor last).
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.shippers))
	for _, s := range m.shippers {
		out = append(out, s.status())
	}
	return out
}

type shipper struct {
	m         *Manager
	name      string
	typ, dest string
	target    Target
	batch     int
	timeout   time.Duration
	headsOnly bool
	wake      chan struct{}

	stored  Cursor  // as read at Start
	found   bool    // a cursor was stored
	checked bool    // stored was checked against the trail (TrustCursor)
	told    *Cursor // the stored cursor OnCursor was last told of

	mu        sync.Mutex
	cur       Cursor
	last      uint64
	lastErr   string
	lastErrAt time.Time
	lastOK    time.Time
	since     time.Time
	curErr    string
	curNote   string
	oversize  uint64
	recent    uint32 // one bit per event of the last StandInWindow delivered, the latest lowest: 1 for a stand-in
	alarmed   bool   // the last countRun left RecentStandIns at StandInAlarm or more
	// legacy are the sink's old cursor keys (Manager.oldNames), deleted
	// after the first cursor saved under its name; nil once deleted.
	legacy  []string
	standby bool
}

// readCursors reads the stored cursors, with those of sinks renamed when
// path tokens were hidden adopted (AdoptRenamedCursors).
func (m *Manager) readCursors(ctx context.Context) (map[string]Cursor, error) {
	cursors, err := m.opts.Cursors.SinkCursors(ctx)
	if err != nil {
		return nil, err
	}
	if cursors == nil {
		cursors = map[string]Cursor{}
	}
	AdoptRenamedCursors(m.opts.CursorKey, cursors, m.opts.Sinks, m.opts.Anchor)
	return cursors, nil
}

// oldNames are the formers a cursor is stored under that no configured
// sink or anchor is called now: the keys a sink's cursor had before its
// name changed (which may hold a token), deleted once its cursor is
// stored under its name.
func (m *Manager) oldNames(formers []string) []string {
	current := currentNames(m.opts.Sinks, m.opts.Anchor)
	var out []string
	for _, old := range formers {
		if _, ok := m.stored[old]; ok && old != "" && !current[old] {
			out = append(out, old)
		}
	}
	return out
}

func (m *Manager) newShipper(name, typ, dest string, t Target, batch int, timeout time.Duration, headsOnly bool) *shipper {
	cur, found := m.stored[name]
	return &shipper{m: m, name: name, typ: typ, dest: dest, target: t, stored: cur, found: found, cur: cur, batch: batch, timeout: timeout, headsOnly: headsOnly, wake: make(chan struct{}, 1), since: time.Now()}
}

func (s *shipper) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Name: s.name, Type: s.typ, Destination: s.dest, Anchor: s.headsOnly, Cursor: s.cur, Last: s.last,
		Lag: Lag(s.cur, s.last, s.headsOnly), LastError: s.lastErr, LastErrorAt: s.lastErrAt, LastDeliveryAt: s.lastOK,
		CursorError: s.curErr, CursorNote: s.curNote, Oversize: s.oversize, RecentStandIns: uint64(bits.OnesCount32(s.recent)), Running: true, Since: s.since, Standby: s.standby}
}

// Lag is how many events a sink at cur has not received when the trail
// ends at last; for the anchor, the events after its last anchored head.
// It is 0 for a cursor past the end: check the cursor first (TrustCursor;
// a shipper never keeps such a cursor).
func Lag(cur Cursor, last uint64, headsOnly bool) uint64 {
	at := cur.Seq
	if headsOnly {
		at = cur.HeadSeq
	}
	if last > at {
		return last - at
	}
	return 0
}

func (s *shipper) run() {
	defer s.m.wg.Done()
	ctx := s.m.ctx
	backoff := time.Duration(0)
	for {
		more, err := s.step(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait <-chan time.Time
		switch {
		case err != nil:
			backoff = min(max(2*backoff, s.m.opts.MinBackoff), s.m.opts.MaxBackoff)
			// Jitter: sinks that failed together do not retry in lockstep.
			d := backoff/2 + rand.N(backoff/2+1)
			s.fail(err)
			wait = time.After(d)
		case more:
			backoff = 0
			continue
		default:
			backoff = 0
			wait = time.After(s.m.opts.Poll)
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-s.wake:
			if err != nil {
				// Woken during backoff: keep waiting out the backoff, so a
				// busy trail does not hammer a sink that is down.
				select {
				case <-ctx.Done():
					return
				case <-wait:
				}
			}
		}
	}
}

func (s *shipper) fail(err error) {
	err = boundedErr(err)
	s.mu.Lock()
	first := s.lastErr == ""
	s.lastErr, s.lastErrAt = err.Error(), s.m.opts.Now()
	s.mu.Unlock()
	if first {
		s.m.opts.Logger.Warn("audit sink delivery failed; retrying with backoff", "sink", s.name, "err", err.Error())
	}
	s.m.opts.OnError(s.name, err)
}

// step delivers one batch; more is true when events remain.
func (s *shipper) step(ctx context.Context) (more bool, err error) {
	st, err := s.m.opts.Source.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("read the trail: %w", err)
	}
	if lead := s.m.opts.Leader; lead != nil && !lead() {
		return false, s.standBy(ctx, st)
	}
	if s.isStandby() {
		// Leading now: another replica moved the cursor meanwhile.
		if err := s.reload(ctx); err != nil {
			return false, err
		}
		// The trail as it is now: the old leader may have saved a cursor
		// past the status read above.
		if st, err = s.m.opts.Source.Head(ctx); err != nil {
			return false, fmt.Errorf("read the trail: %w", err)
		}
	}
	if !s.checked {
		s.trust(ctx, st)
	}
	s.mu.Lock()
	cur := s.cur
	s.last = st.Last.Seq
	s.mu.Unlock()
	if _, c := TrustCursor(nil, s.name, cur, true, st, true); c.Rejected {
		// The trail ended before a cursor this shipper acknowledged: it
		// was cut or replaced under the running server. Skip nothing.
		s.reject(c.Problem)
		cur = Cursor{}
	}

	var recs []Record
	upto := cur.Seq
	if !s.headsOnly && cur.Seq < st.Last.Seq {
		// End the batch at a new head's seq, so the head goes with it: only
		// the latest head is stored, and a sink that is behind would
		// otherwise chase heads that keep moving past its batch.
		var stop uint64
		if h := st.Head; h != nil && h.Seq > cur.HeadSeq && h.Seq > cur.Seq {
			stop = h.Seq
		}
		err := s.m.opts.Source.Range(ctx, cur.Seq+1, func(e audit.Event) bool {
			recs = append(recs, Record{Event: &e})
			return len(recs) < s.batch && e.Seq != stop
		})
		if err != nil {
			return false, fmt.Errorf("read the trail: %w", err)
		}
		if n := len(recs); n > 0 {
			if first := recs[0].Event.Seq; first > cur.Seq+1 {
				s.m.opts.Logger.Warn("audit sink: events were pruned by retention before this sink received them",
					"sink", s.name, "from", cur.Seq+1, "to", first-1)
			}
			upto = recs[n-1].Event.Seq
		}
	}
	if h := st.Head; h != nil && h.Seq > cur.HeadSeq && (s.headsOnly || h.Seq <= upto) {
		hc := *h
		recs = append(recs, Record{Head: &hc})
	}
	if len(recs) == 0 {
		return false, nil
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	err = s.target.Deliver(dctx, recs)
	cancel()
	var standIns []StandIn
	if r, ok := s.target.(standInReporter); ok {
		standIns = r.takeStandIns()
	}
	var partial error
	if err != nil {
		// The collector took a leading part of the batch (a split one):
		// record it, so the next try starts after it, then back off.
		var pe *PartialError
		if !errors.As(err, &pe) || pe.Delivered <= 0 || pe.Delivered >= len(recs) || recs[pe.Delivered-1].Event == nil {
			return false, err
		}
		recs, partial = recs[:pe.Delivered], err
		upto = recs[len(recs)-1].Event.Seq
	}
	next := cur
	next.Seq = upto
	if last := recs[len(recs)-1]; last.Head != nil {
		next.HeadSeq = last.Head.Seq
		if s.headsOnly {
			next.Seq = last.Head.Seq
		}
	}
	next.Updated = s.m.opts.Now().UTC()
	next = SealCursor(s.m.opts.CursorKey, s.name, next)
	for _, si := range standIns {
		s.m.opts.Logger.Warn("audit sink: an event the sink could not take (too large, or refused by the collector) was sent as a stand-in record; read it with `pamctl audit show SEQ -o json`",
			"sink", s.name, "seq", si.Seq, "type", si.EventType, "size", si.Size, "limit", si.Limit, "reason", si.Reason)
	}
	// Delivered: record it even when Close is under way, or the batch
	// would go again on the next start.
	if err := s.m.opts.Cursors.SaveSinkCursor(context.WithoutCancel(ctx), s.name, next); err != nil {
		// Delivered but not recorded: the batch goes again (at least once).
		return false, fmt.Errorf("save cursor: %w", err)
	}
	s.dropLegacy(ctx)
	if partial != nil {
		s.mu.Lock()
		s.cur, s.lastOK = next, next.Updated
		s.oversize += uint64(len(standIns))
		s.countRun(recs, standIns)
		s.mu.Unlock()
		return false, partial
	}
	s.mu.Lock()
	recovered := s.lastErr != ""
	s.cur, s.lastErr, s.lastOK = next, "", next.Updated
	s.oversize += uint64(len(standIns))
	s.countRun(recs, standIns)
	s.mu.Unlock()
	if recovered {
		s.m.opts.Logger.Info("audit sink delivering again", "sink", s.name, "cursor", next.Seq)
	}
	s.m.opts.OnDelivered(s.name)
	return !s.headsOnly && upto < st.Last.Seq, nil
}

// countRun slides the window of recent events (Status.RecentStandIns)
// over the delivered recs, in order; heads do not count. Reaching
// StandInAlarm is logged as an error once, until the count falls below
// it again. s.mu is held.
func (s *shipper) countRun(recs []Record, standIns []StandIn) {
	if len(standIns) == 0 && s.recent == 0 {
		return
	}
	stood := make(map[uint64]bool, len(standIns))
	for _, si := range standIns {
		stood[si.Seq] = true
	}
	for _, r := range recs {
		if r.Event == nil {
			continue
		}
		s.recent = s.recent << 1 & (1<<StandInWindow - 1)
		if stood[r.Event.Seq] {
			s.recent |= 1
		}
	}
	n := bits.OnesCount32(s.recent)
	if n >= StandInAlarm && !s.alarmed {
		s.m.opts.Logger.Error(standInRunMessage(s.name, uint64(n)), "sink", s.name)
	}
	s.alarmed = n >= StandInAlarm
}

// dropLegacy deletes the sink's old cursor key, which holds a path token,
// now that its cursor is stored under its name; a failure is logged and
// tried again after the next delivery.
func (s *shipper) dropLegacy(ctx context.Context) {
	for len(s.legacy) > 0 {
		if err := s.m.opts.Cursors.DeleteSinkCursor(context.WithoutCancel(ctx), s.legacy[0]); err != nil {
			s.m.opts.Logger.Warn("audit sink: could not delete the cursor stored under the sink's old name (which may show its URL's path token); tried again after the next delivery",
				"sink", s.name, "err", safetext.CutError(err, 300))
			return
		}
		s.legacy = s.legacy[1:]
	}
}

func (s *shipper) isStandby() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standby
}

// standBy is a step on a replica that does not lead: no delivery; the
// status shows the shared cursor, so lag and readiness say what the
// leader's sink is doing, not this replica's stale view.
func (s *shipper) standBy(ctx context.Context, st audit.Status) error {
	cursors, err := s.m.readCursors(ctx)
	if err != nil {
		return fmt.Errorf("read cursors: %w", err)
	}
	s.mu.Lock()
	s.standby, s.last = true, st.Last.Seq
	s.cur = cursors[s.name]
	s.recent, s.alarmed = 0, false // the leader's deliveries are its own to judge
	s.mu.Unlock()
	return nil
}

// reload takes the stored cursor again, to be checked against the trail
// before the next delivery (trust), as at Start.
func (s *shipper) reload(ctx context.Context) error {
	cursors, err := s.m.readCursors(ctx)
	if err != nil {
		return fmt.Errorf("read cursors: %w", err)
	}
	s.stored, s.found = cursors[s.name]
	s.checked = false
	// Whether cursors without an authenticator are taken stays what Start
	// decided: the other shippers re-seal theirs meanwhile, which must not
	// turn this one's legacy cursor into a rejected one.
	s.mu.Lock()
	s.standby, s.cur, s.since = false, s.stored, s.m.opts.Now()
	s.recent, s.alarmed = 0, false
	s.mu.Unlock()
	s.m.opts.Logger.Info("audit sink: this replica leads now and delivers from the shared cursor", "sink", s.name, "cursor", s.stored.Seq)
	return nil
}

// trust checks the stored cursor against the trail before the first
// delivery: a cursor that is past its end, or not authenticated, is not
// followed (TrustCursor); an accepted cursor without an authenticator is
// saved again with one.
func (s *shipper) trust(ctx context.Context, st audit.Status) {
	s.checked = true
	s.m.legacyMu.Lock()
	legacyOK := s.m.legacyOK
	s.m.legacyMu.Unlock()
	cur, c := TrustCursor(s.m.opts.CursorKey, s.name, s.stored, s.found, st, legacyOK)
	if (c.Rejected || c.Legacy) && s.m.opts.OnCursor != nil && !s.toldOf(s.stored) {
		// Once per stored cursor: a replica that comes to lead again
		// (reload) checks it again, and while the sink is down no
		// delivery replaces it; an election that flaps must not add an
		// event per sink each time.
		told := s.stored
		s.told = &told
		s.m.opts.OnCursor(s.name, c)
	}
	switch {
	case c.Rejected:
		s.reject(c.Problem)
	case c.Legacy:
		s.m.opts.Logger.Warn("audit sink: "+c.Problem, "sink", s.name)
		s.mu.Lock()
		s.curNote = c.Problem
		s.mu.Unlock()
		sealed := SealCursor(s.m.opts.CursorKey, s.name, cur)
		if err := s.m.opts.Cursors.SaveSinkCursor(context.WithoutCancel(ctx), s.name, sealed); err != nil {
			s.m.opts.Logger.Warn("audit sink: could not save the cursor authenticated; it is at the next delivery", "sink", s.name, "err", err.Error())
		} else {
			cur = sealed
		}
		s.mu.Lock()
		s.cur = cur
		s.mu.Unlock()
	}
}

// toldOf reports whether OnCursor was told of the stored cursor c.
func (s *shipper) toldOf(c Cursor) bool {
	t := s.told
	return t != nil && t.Seq == c.Seq && t.HeadSeq == c.HeadSeq && t.MAC == c.MAC && t.Updated.Equal(c.Updated)
}

// reject restarts delivery at the first retained event and keeps why for
// Status, logs and readiness.
func (s *shipper) reject(problem string) {
	s.m.opts.Logger.Error("audit sink: "+problem, "sink", s.name)
	s.mu.Lock()
	s.cur, s.curErr = Cursor{}, problem
	s.mu.Unlock()
	s.m.opts.OnError(s.name, errors.New(problem))
}

// maxErrorBytes bounds a delivery error as logged, shown by `pamctl audit
// sinks` and passed to OnError.
const maxErrorBytes = 1024

// boundedErr is err with its text cut to maxErrorBytes when it is longer
// (safetext.CutError). Its text stays raw: the status is data (`audit
// sinks -o json` gives it exactly), and what shows it to a person (the
// CLI's table, the log's handlers) escapes it, once.
func boundedErr(err error) error { return safetext.CutError(err, maxErrorBytes) }
