package token

import (
	"context"
	"fmt"
)

// Reload reads the stored keys again and takes in what another replica
// sharing the store wrote: new keys (a rotation), retirements and
// high-water marks. Every record is checked as LoadKeyring checks it; if
// one fails, the ring stays as it was and the error says why. A key this
// ring knows stays known (a record deleted from the store does not
// unpublish it), a retirement is never undone, and a mark never goes
// down. The active key becomes the newest unretired one, so replicas that
// rotated at the same time agree on one.
func (kr *Keyring) Reload(ctx context.Context) error {
	kr.writeMu.Lock()
	defer kr.writeMu.Unlock()
	stored, err := kr.store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("token: reload keys: %w", err)
	}
	kr.mu.RLock()
	merged := make(map[string]*key, len(kr.keys)+len(stored))
	for kid, k := range kr.keys {
		c := *k
		merged[kid] = &c
	}
	kr.mu.RUnlock()
	sealed, older := kr.recordsSealed.Load(), ""
	for _, sk := range stored {
		k, _, v3, err := kr.open(sk)
		if err != nil {
			return err
		}
		if v3 {
			sealed = true // another replica marked them (MarkRecordsSealed)
		} else {
			older = k.kid
		}
		if old, ok := merged[k.kid]; ok {
			if k.retired == nil {
				k.retired, k.next = old.retired, old.next
			}
			if old.mark != nil && (k.mark == nil || k.mark.Seq < old.mark.Seq) {
				k.mark = old.mark
			}
		}
		merged[k.kid] = k
	}
	if sealed && older != "" {
		return errOlderKeyRecord(older)
	}
	var active *key
	for _, k := range merged {
		if k.next != "" && merged[k.next] == nil {
			return fmt.Errorf("%w: key %q was retired for key %q, whose record is missing", ErrTampered, k.kid, k.next)
		}
		if k.retired == nil && (active == nil || k.created.After(active.created) || (k.created.Equal(active.created) && k.kid > active.kid)) {
			active = k
		}
	}
	if active == nil {
		return fmt.Errorf("token: reload keys: every stored key is retired; keeping the current active key")
	}
	kr.mu.Lock()
	kr.keys, kr.active = merged, active
	kr.mu.Unlock()
	kr.recordsSealed.Store(sealed)
	return nil
}
