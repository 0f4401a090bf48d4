package audit

import (
	"context"
	"errors"
	"sync"
)

var (
	// ErrSlowSubscriber ends a subscription whose reader fell more than its
	// buffer behind. Resubscribe from the last seq seen + 1: the replay
	// catches up from the store.
	ErrSlowSubscriber = errors.New("audit: subscriber too slow, dropped (resubscribe from the last seq seen + 1)")
	// ErrClosed is returned after the log was closed.
	ErrClosed = errors.New("audit: log closed")
)

// ReplayFunc calls fn for each stored event with from <= seq <= to, in seq
// order, until fn returns false.
type ReplayFunc func(ctx context.Context, from, to uint64, fn func(Event) bool) error

// DefaultSubscriberBuffer is the live-event buffer of a subscription.
const DefaultSubscriberBuffer = 4096

// maxPending bounds the reorder buffer of a Broadcaster. Events reach
// Publish out of order only by a few commit groups, so hitting it means a
// committed event was never published; subscribers are then ended so they
// resubscribe and replay from the store.
const maxPending = 1 << 16

// Broadcaster fans committed events out to in-process subscribers. Writers
// Publish every committed event (in any order; it reorders by seq) and never
// block; each Subscription replays older events through a ReplayFunc first
// and then receives live ones, without gaps or duplicates.
type Broadcaster struct {
	replay ReplayFunc
	buffer int

	mu      sync.Mutex
	last    uint64 // last seq delivered to subscribers
	pending map[uint64]Event
	subs    map[*Subscription]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// NewBroadcaster returns a broadcaster whose store holds events up to last.
// buffer bounds each subscriber's live queue (DefaultSubscriberBuffer when
// <= 0).
func NewBroadcaster(last uint64, replay ReplayFunc, buffer int) *Broadcaster {
	if buffer <= 0 {
		buffer = DefaultSubscriberBuffer
	}
	return &Broadcaster{replay: replay, buffer: buffer, last: last, pending: map[uint64]Event{}, subs: map[*Subscription]struct{}{}}
}

// Publish hands committed events to subscribers. Call it only after the
// events are committed, for every committed event, from any goroutine.
func (b *Broadcaster) Publish(events ...Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range events {
		switch {
		case e.Seq <= b.last:
			continue
		case e.Seq > b.last+1:
			b.pending[e.Seq] = e
			if len(b.pending) > maxPending {
				b.resync()
			}
			continue
		}
		b.deliver(e)
		for {
			next, ok := b.pending[b.last+1]
			if !ok {
				break
			}
			delete(b.pending, next.Seq)
			b.deliver(next)
		}
	}
}

// deliver queues e for every subscriber; b.mu is held.
func (b *Broadcaster) deliver(e Event) {
	b.last = e.Seq
	for s := range b.subs {
		if e.Seq < s.from {
			continue
		}
		s.mu.Lock()
		if len(s.queue) >= b.buffer {
			s.endLocked(ErrSlowSubscriber)
			delete(b.subs, s)
		} else {
			s.queue = append(s.queue, e)
		}
		s.mu.Unlock()
		s.wakeUp()
	}
}

// resync gives up on a gap in the published seqs: it ends every
// subscription (they replay from the store when they resubscribe) and
// continues after the highest pending seq. b.mu is held.
func (b *Broadcaster) resync() {
	for seq := range b.pending {
		b.last = max(b.last, seq)
	}
	clear(b.pending)
	for s := range b.subs {
		s.mu.Lock()
		s.endLocked(ErrSlowSubscriber)
		s.mu.Unlock()
		s.wakeUp()
		delete(b.subs, s)
	}
}

// Last returns the last seq delivered to subscribers.
func (b *Broadcaster) Last() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Subscribe delivers every event with seq >= from on the subscription's
// channel: first the stored ones (replayed), then live ones as they are
// published. from 0 means from the first retained event. The subscription
// ends, closing C, when ctx ends, Cancel is called, the reader falls too
// far behind (Err returns ErrSlowSubscriber) or the broadcaster closes.
func (b *Broadcaster) Subscribe(ctx context.Context, from uint64) *Subscription {
	from = max(from, 1)
	ctx, cancel := context.WithCancel(ctx)
	c := make(chan Event, 64)
	s := &Subscription{C: c, c: c, b: b, ctx: ctx, cancel: cancel, from: from, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		s.endLocked(ErrClosed)
		s.err = ErrClosed
		cancel()
		close(c)
		close(s.done)
		return s
	}
	s.upto = b.last // stored and published: replay [from, upto], live after
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	go s.run()
	return s
}

// Close ends every subscription with ErrClosed and waits for their
// goroutines, so the store can be closed afterwards.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	b.closed = true
	for s := range b.subs {
		s.mu.Lock()
		s.endLocked(ErrClosed)
		s.mu.Unlock()
		s.cancel()
		delete(b.subs, s)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Broadcaster) remove(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// Subscription is a live follow of the audit log.
type Subscription struct {
	// C delivers events in seq order and is closed when the subscription
	// ends; then Err says why. Events share maps and slices with other
	// subscribers: treat them as read-only.
	C <-chan Event

	c      chan Event
	b      *Broadcaster
	ctx    context.Context
	cancel context.CancelFunc
	from   uint64
	upto   uint64
	wake   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	queue  []Event // live events not yet taken by run
	ended  bool    // no more events will be queued
	endErr error
	err    error // final, set before C is closed
}

// Cancel ends the subscription. Safe to call more than once.
func (s *Subscription) Cancel() {
	s.cancel()
	s.b.remove(s)
}

// Err returns why the subscription ended once C is closed: nil after Cancel
// or the end of its context, ErrSlowSubscriber, ErrClosed or a replay error.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the subscription has ended and C is closed.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) endLocked(err error) {
	if !s.ended {
		s.ended, s.endErr = true, err
	}
}

func (s *Subscription) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Subscription) run() {
	err := s.loop()
	s.b.remove(s)
	s.cancel()
	s.mu.Lock()
	if s.endErr != nil {
		err = s.endErr
	}
	s.err = err
	s.mu.Unlock()
	close(s.c)
	close(s.done)
	s.b.wg.Done()
}

// loop replays, then forwards live events; it returns a replay error or nil.
func (s *Subscription) loop() error {
	send := func(e Event) bool {
		select {
		case s.c <- e:
			return true
		case <-s.ctx.Done():
			return false
		}
	}
	if s.from <= s.upto {
		if err := s.b.replay(s.ctx, s.from, s.upto, send); err != nil && s.ctx.Err() == nil {
			return err
		}
	}
	var batch []Event
	for {
		if s.ctx.Err() != nil {
			return nil
		}
		s.mu.Lock()
		batch, s.queue = s.queue, batch[:0]
		ended := s.ended
		s.mu.Unlock()
		for _, e := range batch {
			if !send(e) {
				return nil
			}
		}
		if len(batch) > 0 {
			clear(batch)
			continue
		}
		if ended {
			return nil
		}
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil
		}
	}
}
