package audit

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// memLog is a stand-in store: append commits under a lock, then publishes
// outside it, so publications race and arrive out of order like concurrent
// bbolt commits do.
type memLog struct {
	mu     sync.Mutex
	events []Event
	b      *Broadcaster
}

func newMemLog(buffer int) *memLog {
	m := &memLog{}
	m.b = NewBroadcaster(0, m.replay, buffer)
	return m
}

func (m *memLog) append() {
	m.mu.Lock()
	e := Event{Seq: uint64(len(m.events) + 1), Type: TypeProxyCall}
	m.events = append(m.events, e)
	m.mu.Unlock()
	m.b.Publish(e)
}

func (m *memLog) replay(ctx context.Context, from, to uint64, fn func(Event) bool) error {
	m.mu.Lock()
	var part []Event
	if from >= 1 && from <= uint64(len(m.events)) {
		part = append(part, m.events[from-1:min(to, uint64(len(m.events)))]...)
	}
	m.mu.Unlock()
	for _, e := range part {
		if !fn(e) {
			return ctx.Err()
		}
	}
	return nil
}

// collect reads n events or fails after a generous timeout.
func collect(t *testing.T, s *Subscription, n int) []Event {
	t.Helper()
	var got []Event
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, s.Err())
			}
			got = append(got, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), n)
		}
	}
	return got
}

func wantContiguous(t *testing.T, got []Event, from uint64) {
	t.Helper()
	for i, e := range got {
		if e.Seq != from+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d (gap or duplicate)", i, e.Seq, from+uint64(i))
		}
	}
}

func TestBroadcasterReordersPublications(t *testing.T) {
	b := NewBroadcaster(0, func(context.Context, uint64, uint64, func(Event) bool) error { return nil }, 0)
	defer b.Close()
	s := b.Subscribe(context.Background(), 1)
	for _, seq := range []uint64{3, 1, 2, 2, 5, 4} {
		b.Publish(Event{Seq: seq})
	}
	wantContiguous(t, collect(t, s, 5), 1)
	if b.Last() != 5 {
		t.Fatalf("Last = %d", b.Last())
	}
}

func TestSubscribeHandoffUnderConcurrentAppends(t *testing.T) {
	const writers, perWriter = 8, 400
	const total = writers * perWriter
	m := newMemLog(total) // large enough that nobody is dropped
	defer m.b.Close()
	for i := 0; i < 50; i++ { // some history to replay
		m.append()
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				m.append()
			}
		}()
	}
	// Subscribers join while appends are racing, from the start, from
	// somewhere in the past, and from the current tail.
	var subs sync.WaitGroup
	for i := 0; i < 12; i++ {
		m.mu.Lock()
		n := uint64(len(m.events))
		m.mu.Unlock()
		from := []uint64{1, 1 + n/2, n + 1, 0}[i%4]
		s := m.b.Subscribe(context.Background(), from)
		subs.Add(1)
		go func() {
			defer subs.Done()
			defer s.Cancel()
			start := max(from, 1)
			got := collect(t, s, int(total+50-start+1))
			wantContiguous(t, got, start)
		}()
	}
	wg.Wait()
	subs.Wait()
}

func TestSlowSubscriberIsDroppedNotBlocking(t *testing.T) {
	m := newMemLog(4)
	defer m.b.Close()
	s := m.b.Subscribe(context.Background(), 1)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 200; i++ { // nobody reads: writers must not block
			m.append()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a slow subscriber blocked the writers")
	}
	var got []Event
	for e := range s.C {
		got = append(got, e)
	}
	if !errors.Is(s.Err(), ErrSlowSubscriber) {
		t.Fatalf("Err = %v, want ErrSlowSubscriber", s.Err())
	}
	if len(got) == 0 || len(got) >= 200 {
		t.Fatalf("got %d events before the drop", len(got))
	}
	wantContiguous(t, got, 1)
	// Resubscribing after the last seen event replays the rest from the store.
	next := got[len(got)-1].Seq + 1
	s2 := m.b.Subscribe(context.Background(), next)
	defer s2.Cancel()
	wantContiguous(t, collect(t, s2, int(200-next+1)), next)
}

func TestSubscriptionEnds(t *testing.T) {
	m := newMemLog(0)
	for i := 0; i < 3; i++ {
		m.append()
	}
	s := m.b.Subscribe(context.Background(), 1)
	collect(t, s, 3)
	s.Cancel()
	s.Cancel()
	<-s.Done()
	if _, ok := <-s.C; ok || s.Err() != nil {
		t.Fatalf("after Cancel: open=%v err=%v", ok, s.Err())
	}

	ctx, cancel := context.WithCancel(context.Background())
	s = m.b.Subscribe(ctx, 1)
	cancel()
	<-s.Done()
	if s.Err() != nil {
		t.Fatalf("after ctx cancel: %v", s.Err())
	}

	s = m.b.Subscribe(context.Background(), 4)
	m.b.Close()
	<-s.Done()
	if !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("after Close: %v", s.Err())
	}
	s = m.b.Subscribe(context.Background(), 1)
	<-s.Done()
	if !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("subscribe after Close: %v", s.Err())
	}
}

func TestSubscribeFromFutureSeq(t *testing.T) {
	m := newMemLog(0)
	defer m.b.Close()
	m.append()
	s := m.b.Subscribe(context.Background(), 5)
	defer s.Cancel()
	for i := 0; i < 6; i++ {
		m.append()
	}
	wantContiguous(t, collect(t, s, 3), 5)
}

func TestReplayErrorEndsSubscription(t *testing.T) {
	boom := errors.New("disk on fire")
	b := NewBroadcaster(10, func(context.Context, uint64, uint64, func(Event) bool) error { return boom }, 0)
	defer b.Close()
	s := b.Subscribe(context.Background(), 1)
	<-s.Done()
	if !errors.Is(s.Err(), boom) {
		t.Fatalf("Err = %v", s.Err())
	}
}

func TestBroadcasterResyncsOnLostPublication(t *testing.T) {
	// If a committed seq is never published, the reorder buffer is bounded:
	// subscribers are told to resubscribe instead of waiting forever.
	b := NewBroadcaster(0, func(context.Context, uint64, uint64, func(Event) bool) error { return nil }, maxPending+10)
	defer b.Close()
	s := b.Subscribe(context.Background(), 1)
	seqs := rand.Perm(maxPending + 1)
	for _, i := range seqs {
		b.Publish(Event{Seq: uint64(i) + 2}) // seq 1 never comes
	}
	<-s.Done()
	if !errors.Is(s.Err(), ErrSlowSubscriber) || b.Last() != maxPending+2 {
		t.Fatalf("Err = %v, Last = %d", s.Err(), b.Last())
	}
}
