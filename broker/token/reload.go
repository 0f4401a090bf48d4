package token

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Reload reads the stored keys again and takes in what another replica
// sharing the store wrote: new keys (a rotation), retirements and
// high-water marks, withdrawals. Every record is checked as LoadKeyring checks it; if
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
	m, err := kr.merge(stored)
	if err != nil {
		return err
	}
	if m.newest() == nil {
		return fmt.Errorf("token: reload keys: every stored key is retired; keeping the current active key")
	}
	kr.install(m)
	return nil
}

// merged is the stored key records taken into a copy of the ring, as
// Reload takes them in: what a write of key records starts from.
type merged struct {
	keys   map[string]*key
	sealed bool // the records are (to be) tagged v3
	// stored is each record as read, and how it was tagged.
	stored map[string]storedKey
	// active, when set, is the kid to make active (a rotation's new key);
	// otherwise the newest unretired key is.
	active string
}

type storedKey struct {
	rec    SealedKey
	legacy bool // no tag: from before tags existed
	v3     bool
}

// merge opens every stored record (failing as LoadKeyring does on one
// that fails its checks) and merges it into a copy of the ring: a key
// either side knows is kept, a retirement is never undone, a mark never
// goes down. Call it holding kr.writeMu.
func (kr *Keyring) merge(stored []SealedKey) (*merged, error) {
	kr.mu.RLock()
	m := &merged{keys: make(map[string]*key, len(kr.keys)+len(stored)), stored: make(map[string]storedKey, len(stored))}
	for kid, k := range kr.keys {
		c := *k
		m.keys[kid] = &c
	}
	kr.mu.RUnlock()
	sealed, older := kr.recordsSealed.Load(), ""
	for _, sk := range stored {
		k, legacy, v3, err := kr.open(sk)
		if err != nil {
			return nil, err
		}
		if v3 {
			sealed = true // another replica marked them (MarkRecordsSealed)
		} else {
			older = k.kid
		}
		m.stored[k.kid] = storedKey{rec: sk, legacy: legacy, v3: v3}
		if old, ok := m.keys[k.kid]; ok {
			if k.retired == nil {
				k.retired, k.next = old.retired, old.next
			}
			if k.withdrawn == nil {
				k.withdrawn = old.withdrawn // a withdrawal is never undone either
			}
			if old.mark != nil && (k.mark == nil || k.mark.Seq < old.mark.Seq) {
				k.mark = old.mark
			}
		}
		m.keys[k.kid] = k
	}
	if sealed && older != "" {
		return nil, errOlderKeyRecord(older)
	}
	m.sealed = sealed
	for _, k := range m.keys {
		if k.next != "" && m.keys[k.next] == nil {
			return nil, fmt.Errorf("%w: key %q was retired for key %q, whose record is missing", ErrTampered, k.kid, k.next)
		}
	}
	return m, nil
}

// newest is the newest unretired key of m (nil when every key is retired);
// of two created at once, the greater kid, so replicas agree.
func (m *merged) newest() *key {
	var active *key
	for _, k := range m.keys {
		if k.retired == nil && (active == nil || k.created.After(active.created) || (k.created.Equal(active.created) && k.kid > active.kid)) {
			active = k
		}
	}
	return active
}

// changed returns the records of m that differ from the stored ones (or
// are not stored), tagged for m.sealed: the keys not stored yet first, so
// a store without batches never holds a successor before its key.
func (kr *Keyring) changed(m *merged) ([]SealedKey, error) {
	kids := make([]string, 0, len(m.keys))
	for kid, k := range m.keys {
		st, ok := m.stored[kid]
		if ok && !st.legacy && st.v3 == m.sealed && sameTime(k.retired, st.rec.RetiredAt) && k.next == st.rec.Successor && sameMark(k.mark, st.rec.Mark) && sameTime(k.withdrawn, st.rec.WithdrawnAt) {
			continue
		}
		kids = append(kids, kid)
	}
	sort.Slice(kids, func(i, j int) bool {
		_, si := m.stored[kids[i]]
		_, sj := m.stored[kids[j]]
		if si != sj {
			return sj
		}
		return kids[i] < kids[j]
	})
	recs := make([]SealedKey, 0, len(kids))
	for _, kid := range kids {
		rec, err := kr.record(m.keys[kid], m.sealed)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

func sameMark(a, b *Mark) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// install makes m the ring. Call it holding kr.writeMu.
func (kr *Keyring) install(m *merged) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	active := m.keys[m.active]
	if active == nil {
		active = m.newest()
	}
	if active == nil && kr.active != nil {
		active = m.keys[kr.active.kid] // every key retired: keep ours (see Reload)
	}
	kr.keys, kr.active = m.keys, active
	kr.recordsSealed.Store(m.sealed)
}

// update is every write of key records: it reads the stored records,
// merges them into a copy of the ring (merge), applies change to the copy
// (nil: none), saves the records that then differ from the stored ones,
// and makes the copy the ring. So a write never puts back a stale copy of
// what another replica sharing the store wrote (a mark, a retirement, a
// key, the v3 tag), and records already as they should be are not
// written.
//
// With a KeyUpdater (store.DB, etcdstore.DB) the read and the write are
// one atomic step, run again when another replica wrote in between.
// With a plain KeyStore they are not: a write another replica makes
// between this read and this write is overwritten with this merge, which
// lacks it (the window is one read and one write; the next write by
// either replica merges again but cannot restore what was lost).
func (kr *Keyring) update(ctx context.Context, change func(m *merged) error) error {
	kr.writeMu.Lock()
	defer kr.writeMu.Unlock()
	var res *merged
	fn := func(stored []SealedKey) ([]SealedKey, error) {
		m, err := kr.merge(stored)
		if err != nil {
			return nil, err
		}
		if change != nil {
			if err := change(m); err != nil {
				return nil, err
			}
		}
		recs, err := kr.changed(m)
		if err != nil {
			return nil, err
		}
		res = m
		return recs, nil
	}
	if u, ok := kr.store.(KeyUpdater); ok {
		if err := u.UpdateKeys(ctx, fn); err != nil {
			return err
		}
	} else {
		stored, err := kr.store.Keys(ctx)
		if err != nil {
			return err
		}
		recs, err := fn(stored)
		if err != nil {
			return err
		}
		if err := kr.save(ctx, recs); err != nil {
			return err
		}
	}
	kr.install(res)
	return nil
}

// save writes recs to a store without UpdateKeys: in one batch when it
// takes batches, else one by one in order.
func (kr *Keyring) save(ctx context.Context, recs []SealedKey) error {
	if len(recs) == 0 {
		return nil
	}
	if bs, ok := kr.store.(BatchKeyStore); ok {
		return bs.SaveKeys(ctx, recs...)
	}
	for _, r := range recs {
		if err := kr.store.SaveKey(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
