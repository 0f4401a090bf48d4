package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// GenesisHash is the prev_hash of the first event of a chain that was never
// pruned.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Byte layout of a sealed line (see Draft.Seal). json.Marshal writes Seq
// first and, since Hash is omitempty and last, ends the canonical bytes with
// the prev_hash member.
const (
	seqPrefix    = `{"seq":`
	prevMember   = `,"prev_hash":"`
	hashMember   = `,"hash":"`
	hexLen       = 2 * sha256.Size
	hashSuffix   = len(hashMember) + hexLen + len(`"}`) // bytes after the canonical body
	prevSuffix   = len(prevMember) + hexLen + len(`"`)  // prev_hash member before hashSuffix
	draftTail    = `"prev_hash":""}`
	draftHead    = `{"seq":0,`
	minLineBytes = len(seqPrefix) + 1 + prevSuffix + hashSuffix
)

// Canonical returns the bytes an event's hash covers: json.Marshal of the
// event with Hash cleared.
func Canonical(e *Event) ([]byte, error) {
	c := *e
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("audit: encode event: %w", err)
	}
	return b, nil
}

// ChainHash returns hex(SHA-256(raw(prevHash) || canonical)).
func ChainHash(prevHash string, canonical []byte) (string, error) {
	var prev [sha256.Size]byte
	if err := decodeHash(prev[:], prevHash); err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// decodeHash decodes a 64-digit lower-case hex hash into dst.
func decodeHash(dst []byte, s string) error {
	if len(s) != hexLen || !isLowerHex(s) {
		return fmt.Errorf("audit: malformed hash %q", s)
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

func isLowerHex[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Draft is a normalized event encoded once, outside any transaction, and
// sealed into the chain inside one with Seal. Sealing it again (a retried
// batch) gives the same bytes for the same seq and prev hash.
//
// The encoding is written into a buffer with room on both sides, where
// SealWrapped writes the record around it: one allocation an event instead
// of two (the record of a thousand streams ending at once was garbage of
// its own size). A record is so valid until the draft is sealed again.
type Draft struct {
	ev   Event
	buf  []byte // draftFront bytes, the body, draftBack bytes
	body []byte // canonical bytes with seq 0 and prev_hash "", in buf
}

// Room a draft keeps around its body: before it, an envelope's prefix (up
// to sealRoom bytes) and `{"seq":N` in place of `{"seq":0`; after it, the
// prev_hash and hash members and an envelope's suffix (up to sealRoom).
const (
	sealRoom   = 32
	draftFront = sealRoom + len(seqPrefix) + 20
	draftBack  = prevSuffix + hashSuffix + sealRoom
)

// draftWriter takes what an Encoder writes (one Write of the encoding and
// its newline) into a buffer with the draft's room around it.
type draftWriter struct{ buf []byte }

func (w *draftWriter) Write(p []byte) (int, error) {
	if w.buf == nil {
		w.buf = make([]byte, draftFront, draftFront+len(p)+draftBack)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// encodedSize is about what appendEvent writes for e (every string, with
// room for member names, numbers and a few escapes), so that the draft's
// buffer is allocated once, and not much larger than it needs.
func encodedSize(e *Event) int {
	n := 400 + len(e.Type) + len(e.Code) + len(e.Grant) + len(e.Request) + len(e.Review) + len(e.Target) +
		len(e.Decision) + len(e.Model) + len(e.Endpoint) + len(e.Prompt) + len(e.PromptSHA256) +
		len(e.Response) + len(e.Error) + len(e.PrevHash) + len(e.Hash)
	if a := e.Actor; a != nil {
		n += 100 + len(a.Subject) + len(a.Display) + len(a.Email) + len(a.Issuer) + len(a.Kind) + len(a.TokenID) + len(a.Act)
		for _, g := range a.Groups {
			n += len(g) + 3
		}
	}
	if c := e.Client; c != nil {
		n += 32 + len(c.RemoteAddr) + len(c.UserAgent)
	}
	for _, r := range e.Reasons {
		n += len(r) + 3
	}
	for _, u := range e.Unscanned {
		n += len(u) + 3
	}
	for k := range e.Masked {
		n += len(k) + 24
	}
	for k, v := range e.Details {
		n += len(k) + len(v) + 6
	}
	return n + n/32
}

// NewDraft normalizes e in place (see Event.Normalize) and encodes it.
func NewDraft(e *Event, now time.Time) (*Draft, error) {
	if err := e.Normalize(now); err != nil {
		return nil, err
	}
	d := &Draft{ev: e.Clone()}
	var w draftWriter
	need := draftFront + encodedSize(&d.ev) + draftBack
	if bp, _ := draftBufs.Get().(*[]byte); bp != nil && cap(*bp) >= need {
		w.buf = (*bp)[:draftFront]
	} else {
		w.buf = make([]byte, draftFront, need)
	}
	var ok bool
	if w.buf, ok = appendEvent(w.buf, &d.ev); ok {
		w.buf = append(w.buf, '\n') // as the Encoder ends it
	} else {
		// Encoder writes json.Marshal's bytes (HTML escaped too) and a newline.
		w.buf = nil
		if err := json.NewEncoder(&w).Encode(&d.ev); err != nil {
			return nil, fmt.Errorf("audit: encode event: %w", err)
		}
	}
	body := w.buf[draftFront : len(w.buf)-1]
	if len(body) < len(draftHead)+len(draftTail) || string(body[:len(draftHead)]) != draftHead || string(body[len(body)-len(draftTail):]) != draftTail {
		return nil, errors.New("audit: event encoding does not start with seq and end with prev_hash")
	}
	if n := draftFront + len(body) + draftBack; n > MaxLineBytes {
		// Every reader of the trail (the segment at start, an export, a
		// file sink) bounds a line; an event none could read back is
		// refused here, not acknowledged and lost.
		return nil, fmt.Errorf("audit: a %s event encodes to %d bytes, more than the trail's limit of %d per event: cut its fields", e.Type, n, MaxLineBytes)
	}
	if need := draftFront + len(body) + draftBack; cap(w.buf) < need {
		w.buf = append(w.buf[:len(w.buf):len(w.buf)], make([]byte, need-len(w.buf))...)
	}
	d.buf, d.body = w.buf[:cap(w.buf)], w.buf[draftFront:draftFront+len(body)]
	return d, nil
}

// draftBufs holds the buffers of released drafts (*[]byte).
var draftBufs sync.Pool

// Release gives the draft's buffer to a later draft. The records it sealed
// are invalid from then on, and it cannot be sealed again: a store calls it
// once nothing reads them (its index has copied them). A thousand streams
// ending at once drafted a thousand events of a few KiB each, garbage that
// was all still in the heap at their peak.
func (d *Draft) Release() {
	if d.buf == nil {
		return
	}
	b := d.buf[:0]
	d.buf, d.body = nil, nil
	draftBufs.Put(&b)
}

// Event returns the drafted event carrying seq, prev and hash. Its maps
// and slices are the draft's own copies, shared by every Event returned:
// treat them as read-only.
func (d *Draft) Event(seq uint64, prev, hash string) Event {
	e := d.ev
	e.Seq, e.PrevHash, e.Hash = seq, prev, hash
	return e
}

// Seal places the draft at seq after prev and returns the stored line,
// json.Marshal of the event with Seq, PrevHash and Hash set, and its hash.
// It only splices the prepared bytes, so it is cheap enough to run inside a
// write transaction.
func (d *Draft) Seal(seq uint64, prev string) (line []byte, hash string, err error) {
	_, line, hash, err = d.SealWrapped(seq, prev, "", "")
	return line, hash, err
}

// SealWrapped is Seal writing the line between prefix and suffix: rec is
// prefix, line, suffix; line is the part of rec Seal returns. A store that
// keeps the line in an envelope copies it once less. With prefix and
// suffix of up to 32 bytes rec is written in the draft's own buffer, around
// the encoded event, and is valid until the draft is sealed again (a store
// that retries a batch uses the last seal's record).
func (d *Draft) SealWrapped(seq uint64, prev, prefix, suffix string) (rec, line []byte, hash string, err error) {
	if d.body == nil {
		return nil, nil, "", errors.New("audit: the draft was released")
	}
	var prevRaw [sha256.Size]byte
	if err := decodeHash(prevRaw[:], prev); err != nil {
		return nil, nil, "", err
	}
	// mid is `,"time":...,` ending before "prev_hash"; nothing writes it.
	midAt := len(draftHead) - 1
	mid := d.body[midAt : len(d.body)-len(draftTail)]
	var digits [20]byte
	n := len(strconv.AppendUint(digits[:0], seq, 10))
	if d.buf != nil && len(prefix) <= sealRoom && len(suffix) <= sealRoom {
		// In place: the record starts where prefix, `{"seq":` and the
		// number end at mid, and is written over the room after it.
		at := draftFront + midAt
		start := at - n - len(seqPrefix) - len(prefix)
		rec = d.buf[start:at]
		copy(rec, prefix)
		copy(rec[len(prefix):], seqPrefix)
		copy(rec[len(prefix)+len(seqPrefix):], digits[:n])
		rec = d.buf[start : at+len(mid) : len(d.buf)]
	} else {
		rec = make([]byte, 0, len(prefix)+len(d.body)+20+hexLen+hashSuffix+len(suffix))
		rec = append(rec, prefix...)
		rec = append(rec, seqPrefix...)
		rec = append(rec, digits[:n]...)
		rec = append(rec, mid...)
	}
	return sealTail(rec, len(prefix), prevRaw[:], prev, suffix)
}

// sealTail ends rec (the prefix, then the line up to prev_hash) with the
// prev_hash and hash members and suffix.
func sealTail(rec []byte, start int, prevRaw []byte, prev, suffix string) ([]byte, []byte, string, error) {
	rec = append(rec, `"prev_hash":"`...)
	rec = append(rec, prev...)
	rec = append(rec, `"}`...)
	h := sha256.New()
	h.Write(prevRaw)
	h.Write(rec[start:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	rec = rec[:len(rec)-1] // drop the closing brace of the canonical bytes
	rec = append(rec, hashMember...)
	rec = hex.AppendEncode(rec, sum[:])
	rec = append(rec, `"}`...)
	end := len(rec)
	rec = append(rec, suffix...)
	return rec, rec[start:end:end], string(rec[end-2-hexLen : end-2]), nil
}

// HeadSigner signs chain heads and retention anchors, normally with the
// broker's Ed25519 token key. It must not use the audit store.
type HeadSigner interface {
	SignHead(msg []byte) (kid string, sig []byte, err error)
}

// HighWater keeps a trail's high-water mark: the last head ever signed,
// recorded where a writer of the data file without the master key can
// neither forge nor lower it (broker/token's Keyring keeps it in the signing
// key's authenticated record). A log whose HeadSigner also implements
// HighWater raises the mark after storing each head, refuses to open a trail
// that falls short of it, and verifies against it.
// It also resolves every key the deployment ever signed with, so the log
// can refuse a stored head or anchor signed by a key it does not hold.
type HighWater interface {
	RaiseHighWater(ctx context.Context, kid string, seq uint64, hash string) error
	HighWater() (seq uint64, hash string, ok bool)
	AnyPublicKey(kid string) (ed25519.PublicKey, bool)
}

// KeyFunc returns the Ed25519 public key for a key id, including retired
// keys that signed old heads.
type KeyFunc func(kid string) (ed25519.PublicKey, bool)

// Ed25519Signer is a HeadSigner holding one private key.
type Ed25519Signer struct {
	KID string
	Key ed25519.PrivateKey
}

// SignHead implements HeadSigner.
func (s Ed25519Signer) SignHead(msg []byte) (string, []byte, error) {
	if len(s.Key) != ed25519.PrivateKeySize {
		return "", nil, errors.New("audit: signer has no Ed25519 private key")
	}
	return s.KID, ed25519.Sign(s.Key, msg), nil
}

// Keys returns a KeyFunc over a fixed set of public keys.
func Keys(keys map[string]ed25519.PublicKey) KeyFunc {
	return func(kid string) (ed25519.PublicKey, bool) {
		k, ok := keys[kid]
		return k, ok
	}
}

// Link is a position in the chain: an event's seq and hash.
type Link struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// SignedHead is a signature over the chain head at some moment. A head
// whose seq is past the last stored event proves the tail was truncated.
type SignedHead struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	KID  string    `json:"kid"`
	Sig  []byte    `json:"sig"`
}

// Message returns the bytes the head signature covers.
func (h *SignedHead) Message() []byte {
	return fmt.Appendf(nil, "pamctl-audit-head-v1\nseq=%d\nhash=%s\ntime=%s\n",
		h.Seq, h.Hash, h.Time.UTC().Format(time.RFC3339Nano))
}

// Check verifies the head's signature against keys; a failure is a
// *BreakError of kind BreakHead.
func (h *SignedHead) Check(keys KeyFunc) error {
	return checkSig(keys, h.KID, h.Sig, h.Message(), h.Seq, BreakHead, "head")
}

// Sign fills KID and Sig using s.
func (h *SignedHead) Sign(s HeadSigner) error {
	kid, sig, err := s.SignHead(h.Message())
	if err != nil {
		return fmt.Errorf("audit: sign head: %w", err)
	}
	h.KID, h.Sig = kid, sig
	return nil
}

// Anchor records where retention cut the chain: Seq and Hash are the last
// deleted event's, so the first kept event's prev_hash equals Hash. The
// same values are written into the chain as an audit.anchor event, and the
// anchor is signed like a head.
type Anchor struct {
	Seq    uint64    `json:"seq"`
	Hash   string    `json:"hash"`
	Before time.Time `json:"before"`
	Time   time.Time `json:"time"`
	KID    string    `json:"kid,omitempty"`
	Sig    []byte    `json:"sig,omitempty"`
}

// Message returns the bytes the anchor signature covers.
func (a *Anchor) Message() []byte {
	return fmt.Appendf(nil, "pamctl-audit-anchor-v1\nseq=%d\nhash=%s\nbefore=%s\ntime=%s\n",
		a.Seq, a.Hash, a.Before.UTC().Format(time.RFC3339Nano), a.Time.UTC().Format(time.RFC3339Nano))
}

// Check verifies the anchor's signature against keys; a failure is a
// *BreakError of kind BreakAnchor.
func (a *Anchor) Check(keys KeyFunc) error {
	return checkSig(keys, a.KID, a.Sig, a.Message(), a.Seq, BreakAnchor, "anchor")
}

// Sign fills KID and Sig using s.
func (a *Anchor) Sign(s HeadSigner) error {
	kid, sig, err := s.SignHead(a.Message())
	if err != nil {
		return fmt.Errorf("audit: sign anchor: %w", err)
	}
	a.KID, a.Sig = kid, sig
	return nil
}

// Details keys of an audit.anchor event.
const (
	DetailAnchorSeq  = "anchor_seq"
	DetailAnchorHash = "anchor_hash"
	DetailBefore     = "before"
	DetailPruned     = "pruned"
)

// AnchorEvent is the audit.anchor event a log appends when it prunes.
func AnchorEvent(a *Anchor, pruned uint64) *Event {
	return &Event{
		Time:  a.Time,
		Type:  TypeAuditAnchor,
		Actor: &Actor{Subject: "pamctl", Kind: KindService},
		Details: map[string]string{
			DetailAnchorSeq:  strconv.FormatUint(a.Seq, 10),
			DetailAnchorHash: a.Hash,
			DetailBefore:     a.Before.UTC().Format(time.RFC3339Nano),
			DetailPruned:     strconv.FormatUint(pruned, 10),
		},
	}
}
