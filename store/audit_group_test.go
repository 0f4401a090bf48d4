package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
)

// One durable commit covers every append that arrived while the previous
// commit ran, and starts as soon as that commit returns: no timer.
func TestAuditGroupCommitCoversWhatArrivedMeanwhile(t *testing.T) {
	const waiting = 10
	ctx := context.Background()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var batches []int
	var bmu sync.Mutex
	opts := AuditOptions{
		Signer: testSigner,
		OnBatch: func(n int) {
			bmu.Lock()
			batches = append(batches, n)
			bmu.Unlock()
		},
		sealHook: func(d *audit.Draft) error {
			if d.Event(0, "", "").Actor.TokenID == "tok-first" {
				entered <- struct{}{}
				<-release
			}
			return nil
		},
	}
	_, l := openAudit(t, t.TempDir(), true, opts)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := benchEvent(0)
		e.Actor.TokenID = "tok-first"
		if err := l.Append(ctx, e); err != nil {
			t.Error(err)
		}
	}()
	<-entered // the first commit is running
	for i := 0; i < waiting; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Append(ctx, benchEvent(i+1)); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.group.mu.Lock()
		n := len(l.group.pending)
		l.group.mu.Unlock()
		if n == waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", n, waiting)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	bmu.Lock()
	got := append([]int(nil), batches...)
	bmu.Unlock()
	if len(got) != 2 || got[0] != 1 || got[1] != waiting {
		t.Fatalf("commits of %v events, want [1 %d]", got, waiting)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != waiting+1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// An event that fails inside a shared commit fails alone: the others of
// its generation are stored, in one contiguous chain.
func TestAuditGroupCommitFailsOnlyTheBadAppend(t *testing.T) {
	ctx := context.Background()
	errPoison := errors.New("poisoned event")
	opts := AuditOptions{Signer: testSigner, sealHook: func(d *audit.Draft) error {
		if d.Event(0, "", "").Actor.TokenID == "tok-poison" {
			return errPoison
		}
		return nil
	}}
	_, l := openAudit(t, t.TempDir(), true, opts)
	const writers = 32
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				e := benchEvent(w*5 + i)
				if w == 7 && i == 2 {
					e.Actor.TokenID = "tok-poison"
				}
				if err := l.Append(ctx, e); err != nil {
					errs[w] = err
				}
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if w == 7 {
			if !errors.Is(err, errPoison) {
				t.Errorf("poisoned append: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	var stored []audit.Event
	if err := l.Range(ctx, 1, func(e audit.Event) bool { stored = append(stored, e); return true }); err != nil {
		t.Fatal(err)
	}
	if len(stored) != writers*5-1 {
		t.Fatalf("stored %d events, want %d", len(stored), writers*5-1)
	}
	wantSeqs(t, stored, 1)
	if _, err := l.SignHead(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(ctx, testKeys); err != nil || rep.Events != writers*5-1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}
