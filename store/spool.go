package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/safefile"
)

// SpoolFileName is the proxy role's audit spool in its data dir. The
// proxy role opens no other file: it holds no master key, no vault and no
// provider key.
const SpoolFileName = "spool.db"

// Spool schema (bbolt file spool.db):
//
//	meta   "version" → uint64 1; "enrollment" → the enrollment id (string)
//	spool  big-endian uint64 sequence (NextSequence, from 1) → JSON audit.Event
//
// Events are deleted once the broker acknowledges them; the sequence
// never goes back, so a restarted proxy resumes where it stopped.
var (
	bucketSpool     = []byte("spool")
	bucketSpoolMeta = []byte("meta")
	keyEnrollment   = []byte("enrollment")
)

// Spool is a durable, ordered queue of audit events.
type Spool struct {
	bolt *bolt.DB
	mu   sync.Mutex
	size int64 // bytes of pending events (approximate: values only)
}

var _ link.Spool = (*Spool)(nil)

// OpenSpool opens (or creates) DIR/spool.db, mode 0600 in a 0700 dir.
func OpenSpool(dir string) (*Spool, error) {
	if err := safefile.MkdirPrivate(dir); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	path := filepath.Join(dir, SpoolFileName)
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, &LockedError{Dir: dir}
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Spool{bolt: b}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, n := range [][]byte{bucketSpool, bucketSpoolMeta} {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketSpoolMeta)
		if v := m.Get(keyVersion); v == nil {
			if err := m.Put(keyVersion, u64(1)); err != nil {
				return err
			}
		} else if len(v) != 8 || binary.BigEndian.Uint64(v) > 1 {
			return fmt.Errorf("%w (spool schema): upgrade pamctl", ErrSchemaTooNew)
		}
		return tx.Bucket(bucketSpool).ForEach(func(_, v []byte) error {
			s.size += int64(len(v))
			return nil
		})
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("store: spool: %w", err)
	}
	return s, nil
}

// Append stores e durably (fsync) and returns its sequence number.
func (s *Spool) Append(_ context.Context, e *audit.Event) (uint64, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = s.bolt.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSpool)
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		seq = n
		return b.Put(u64(n), raw)
	})
	if err != nil {
		return 0, fmt.Errorf("store: spool append: %w", err)
	}
	s.mu.Lock()
	s.size += int64(len(raw))
	s.mu.Unlock()
	return seq, nil
}

// Pending returns up to n events in sequence order.
func (s *Spool) Pending(_ context.Context, n int) ([]link.SpooledEvent, error) {
	var out []link.SpooledEvent
	err := s.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSpool).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			var e audit.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("spool event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, link.SpooledEvent{Seq: binary.BigEndian.Uint64(k), Event: e})
		}
		return nil
	})
	return out, err
}

// Ack deletes every event up to and including seq.
func (s *Spool) Ack(_ context.Context, seq uint64) error {
	var freed int64
	err := s.bolt.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSpool).Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, v = c.First() {
			freed += int64(len(v))
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: spool ack: %w", err)
	}
	s.mu.Lock()
	s.size -= freed
	s.mu.Unlock()
	return nil
}

// Size is the bytes of events not yet acknowledged.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Enrollment returns the enrollment id the spool was last shipped under.
func (s *Spool) Enrollment() (string, error) {
	var id string
	err := s.bolt.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketSpoolMeta).Get(keyEnrollment))
		return nil
	})
	return id, err
}

// SetEnrollment records the enrollment id.
func (s *Spool) SetEnrollment(id string) error {
	return s.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSpoolMeta).Put(keyEnrollment, []byte(id))
	})
}

// Next is the sequence of the first event not yet acknowledged: the
// oldest pending one, or the one the next Append gets.
func (s *Spool) Next() (uint64, error) {
	var n uint64
	err := s.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSpool)
		if k, _ := b.Cursor().First(); k != nil {
			n = binary.BigEndian.Uint64(k)
		} else {
			n = b.Sequence() + 1
		}
		return nil
	})
	return n, err
}

// Close closes the file.
func (s *Spool) Close() error { return s.bolt.Close() }
