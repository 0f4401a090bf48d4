package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"iter"
	"strconv"
	"unicode/utf8"
)

// ErrTampered matches every *BreakError with errors.Is.
var ErrTampered = errors.New("audit: chain verification failed")

// BreakKind says how a chain is broken.
type BreakKind string

// Break kinds.
const (
	// BreakHash: the event's content does not hash to its stored hash (edited).
	BreakHash BreakKind = "hash"
	// BreakLink: prev_hash is not the previous event's hash.
	BreakLink BreakKind = "link"
	// BreakMissing: a seq is absent (deleted).
	BreakMissing BreakKind = "missing"
	// BreakOrder: a seq appears out of order or twice (reordered, copied).
	BreakOrder BreakKind = "order"
	// BreakTruncated: the signed head names events that are not there.
	BreakTruncated BreakKind = "truncated"
	// BreakHead: the signed head is missing, has a bad signature or does not
	// match the event at its seq.
	BreakHead BreakKind = "head"
	// BreakAnchor: the retention anchor has a bad signature or disagrees
	// with the audit.anchor event in the chain.
	BreakAnchor BreakKind = "anchor"
	// BreakMalformed: a stored line is not a sealed event.
	BreakMalformed BreakKind = "malformed"
	// BreakHighWater: the trail is shorter than, or differs from, the
	// high-water mark kept in the signing key's authenticated record (events,
	// the head or the anchor were deleted, or the file was rolled back).
	BreakHighWater BreakKind = "high_water"
	// BreakUnauthenticated: the event carries no valid authenticator of
	// this deployment (the store's, under a key of its master key): a
	// writer of the store without the master key added it, or changed
	// the authenticator pamctl wrote. Only a store's Verify reports it.
	BreakUnauthenticated BreakKind = "unauthenticated"
)

// Scopes of a Report.
const (
	// ScopeTrail: the events start at genesis or at the signed retention
	// anchor, so nothing before them can be missing.
	ScopeTrail = "trail"
	// ScopeRange: the events are a piece of a chain starting after
	// Report.Start; what came before it was not checked.
	ScopeRange = "range"
)

// BreakError is the first broken link Verify found.
type BreakError struct {
	// Seq is the first seq whose integrity cannot be established.
	Seq      uint64
	Kind     BreakKind
	Expected string
	Found    string
}

func (e *BreakError) Error() string {
	return fmt.Sprintf("audit: chain broken at seq %d (%s): expected %s, found %s", e.Seq, e.Kind, e.Expected, e.Found)
}

// Is makes errors.Is(err, ErrTampered) true.
func (e *BreakError) Is(target error) bool { return target == ErrTampered }

// Report summarizes a verified chain.
type Report struct {
	// Events is how many events were checked; First and Last their seqs.
	Events uint64 `json:"events"`
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	// LastHash is the hash of the last event (or of the anchor).
	LastHash string      `json:"last_hash"`
	Anchor   *Anchor     `json:"anchor,omitempty"`
	Head     *SignedHead `json:"head,omitempty"`
	// Signed is true when the head (and anchor, if any) signatures were
	// checked against the keys.
	Signed bool `json:"signed"`
	// Partial is true for a ranged export: the events form a consistent
	// piece of the chain, signed only if the range reaches the head.
	Partial bool `json:"partial,omitempty"`
	// Scope is ScopeTrail or ScopeRange; Start is where a range starts
	// (the seq and hash of the event before its first one).
	Scope string `json:"scope"`
	Start *Link  `json:"start,omitempty"`
	// HighWater is the authenticated high-water mark the trail was checked
	// against, nil when none was given (an export checked offline, or a
	// deployment that never signed a head).
	HighWater *Link `json:"high_water,omitempty"`
	// Keys says where the signature keys came from; the caller sets it
	// (KeysDeployment, KeysJWKSFile, KeysBroker or KeysNone).
	Keys string `json:"keys,omitempty"`
	// Unsigned counts events after the signed head: their truncation is not
	// detectable until the next head is signed.
	Unsigned uint64 `json:"unsigned"`
	// Store names the storage the trail was read from; the store's Verify
	// sets it (nil for an export checked offline).
	Store *StoreRef `json:"store,omitempty"`
}

// Storage backends of a StoreRef.
const (
	StoreBolt = "bbolt"
	StoreEtcd = "etcd"
)

// StoreRef names the storage a trail was read from: what an operator
// restores, and what a writer without the master key would have written.
type StoreRef struct {
	// Backend is StoreBolt or StoreEtcd.
	Backend string `json:"backend"`
	// Name is the database file's name (pamctl.db) for bbolt, the key
	// prefix for etcd.
	Name string `json:"name"`
}

// Sources of the keys a Report's signatures were checked against.
const (
	// KeysDeployment: this deployment's keys, each proven by its seed
	// unsealing under the master key.
	KeysDeployment = "deployment"
	// KeysJWKSFile: a JWKS document the user supplied.
	KeysJWKSFile = "jwks-file"
	// KeysBroker: the JWKS the broker serves now (retired keys whose
	// tokens have expired are no longer in it).
	KeysBroker = "broker-jwks"
	// KeysNone: signatures were not checked.
	KeysNone = "none"
)

var closeBrace = []byte{'}'}

// recentHashes is how many trailing hashes a Verifier keeps to check a head
// that arrives after the events (the last line of an export).
const recentHashes = 1 << 16

// Verifier checks a chain one stored line at a time, in seq order. Create it
// with NewVerifier, call Add for every event line, then Finish.
type Verifier struct {
	keys    KeyFunc
	anchor  *Anchor
	partial bool        // starts mid-chain at an unsigned link (a ranged export)
	start   Link        // where a partial chain starts
	head    *SignedHead // known up front, or nil
	mark    *Link       // authenticated high-water mark, or nil
	markOK  bool        // the event at mark.Seq matched
	started bool
	err     error

	next     uint64 // expected seq
	prev     [hexLen]byte
	events   uint64
	first    uint64
	headSeen bool // the event at head.Seq matched (up-front head only)

	anchorEv *Link // last audit.anchor event seen
	recent   [][sha256.Size]byte
	h        hash.Hash
	sum      [sha256.Size]byte
	hexSum   [hexLen]byte
}

// NewVerifier starts a verification at anchor (nil for a chain that was
// never pruned). keys checks the anchor and head signatures; with nil keys
// signatures are not checked and a missing head is not an error.
func NewVerifier(anchor *Anchor, keys KeyFunc) *Verifier {
	v := &Verifier{keys: keys, anchor: anchor, next: 1, h: sha256.New()}
	copy(v.prev[:], GenesisHash)
	if anchor != nil {
		v.next = anchor.Seq + 1
		if len(anchor.Hash) != hexLen || !isLowerHex(anchor.Hash) {
			v.err = &BreakError{Seq: anchor.Seq, Kind: BreakAnchor, Expected: "a 64-digit hex hash", Found: quoteShort([]byte(anchor.Hash))}
		}
		copy(v.prev[:], anchor.Hash)
		if v.err == nil && keys != nil {
			v.err = checkSig(keys, anchor.KID, anchor.Sig, anchor.Message(), anchor.Seq, BreakAnchor, "anchor")
		}
	}
	return v
}

// NewRangeVerifier checks part of a chain that starts after start, an
// unsigned link taken from a ranged export. It proves the events are a
// consistent piece of a chain; their authenticity is proven only when the
// range reaches the signed head, which then must match.
func NewRangeVerifier(start Link, keys KeyFunc) *Verifier {
	v := &Verifier{keys: keys, partial: true, start: start, next: start.Seq + 1, h: sha256.New()}
	if len(start.Hash) != hexLen || !isLowerHex(start.Hash) {
		v.err = &BreakError{Seq: start.Seq, Kind: BreakMalformed, Expected: "a 64-digit hex hash at the range start", Found: quoteShort([]byte(start.Hash))}
	}
	copy(v.prev[:], start.Hash)
	return v
}

// ExpectHighWater gives the verifier the trail's authenticated high-water
// mark (the last head ever signed, kept where a writer of the data file
// cannot lower it): the chain must reach it with the same hash, or have
// pruned it behind the signed anchor, and the signed head must not be older.
func (v *Verifier) ExpectHighWater(mark Link) { v.mark = &mark }

// ExpectHead tells the verifier the signed head before the events, so it
// can check the head's hash at any distance from the tail.
func (v *Verifier) ExpectHead(h *SignedHead) { v.head = h }

// Add checks the next stored event line (json of the event with its hash).
// The line is not retained.
func (v *Verifier) Add(line []byte) error {
	if v.err != nil {
		return v.err
	}
	v.err = v.add(line)
	return v.err
}

func (v *Verifier) add(line []byte) error {
	seq, typ, ok := parseHead(line)
	if !ok || len(line) < minLineBytes {
		return &BreakError{Seq: v.next, Kind: BreakMalformed, Expected: "a sealed event line", Found: quoteShort(line)}
	}
	switch {
	case seq > v.next:
		return &BreakError{Seq: v.next, Kind: BreakMissing, Expected: fmt.Sprintf("seq %d", v.next), Found: fmt.Sprintf("seq %d", seq)}
	case seq < v.next:
		return &BreakError{Seq: v.next, Kind: BreakOrder, Expected: fmt.Sprintf("seq %d", v.next), Found: fmt.Sprintf("seq %d", seq)}
	}
	end := len(line) - hashSuffix
	stored := line[end+len(hashMember) : len(line)-2]
	prev := line[end-prevSuffix+len(prevMember) : end-1]
	var prevRaw [sha256.Size]byte
	if string(line[end:end+len(hashMember)]) != hashMember || string(line[len(line)-2:]) != `"}` ||
		string(line[end-prevSuffix:end-prevSuffix+len(prevMember)]) != prevMember || line[end-1] != '"' {
		return &BreakError{Seq: seq, Kind: BreakMalformed, Expected: "prev_hash and hash as the last members", Found: quoteShort(line)}
	}
	if _, err := hex.Decode(prevRaw[:], prev); err != nil {
		return &BreakError{Seq: seq, Kind: BreakMalformed, Expected: "a hex prev_hash", Found: quoteShort(prev)}
	}
	// hash = SHA-256(raw(prev_hash) || canonical), canonical = line without
	// the hash member. A stored hash in any other spelling than lower-case
	// hex fails the comparison below, and so does an upper-case prev_hash
	// the comparison with the previous hash.
	v.h.Reset()
	v.h.Write(prevRaw[:])
	v.h.Write(line[:end])
	v.h.Write(closeBrace)
	v.h.Sum(v.sum[:0])
	hex.Encode(v.hexSum[:], v.sum[:])
	if !bytes.Equal(v.hexSum[:], stored) {
		return &BreakError{Seq: seq, Kind: BreakHash, Expected: string(v.hexSum[:]), Found: string(stored)}
	}
	if !bytes.Equal(prev, v.prev[:]) {
		return &BreakError{Seq: seq, Kind: BreakLink, Expected: string(v.prev[:]), Found: string(prev)}
	}
	if typ == string(TypeAuditAnchor) {
		l, err := anchorLink(line)
		if err != nil {
			return &BreakError{Seq: seq, Kind: BreakMalformed, Expected: "anchor details", Found: err.Error()}
		}
		if v.partial && l.Seq >= v.start.Seq {
			// Retention deletes every event up to the cut before it writes
			// the audit.anchor event, so a genuine range always starts
			// after it; one starting at the cut is a whole trail whose
			// signed anchor line was replaced.
			return &BreakError{Seq: seq, Kind: BreakAnchor,
				Expected: fmt.Sprintf("a range starting after the retention cut at seq %d that this audit.anchor event records (a trail starting at the cut carries the signed anchor)", l.Seq),
				Found:    fmt.Sprintf("a range starting at seq %d", v.start.Seq)}
		}
		v.anchorEv = &l
	}
	if v.mark != nil && seq == v.mark.Seq {
		if string(stored) != v.mark.Hash {
			return &BreakError{Seq: seq, Kind: BreakHighWater, Expected: "hash " + v.mark.Hash + " (high-water mark)", Found: string(stored)}
		}
		v.markOK = true
	}
	if v.head != nil && seq == v.head.Seq {
		if string(stored) != v.head.Hash {
			return &BreakError{Seq: seq, Kind: BreakHead, Expected: "hash " + v.head.Hash + " (signed head)", Found: string(stored)}
		}
		v.headSeen = true
	}
	if v.head == nil {
		// seqs are contiguous from v.first, so seq-first is the position.
		if pos := v.events % recentHashes; pos == uint64(len(v.recent)) {
			v.recent = append(v.recent, v.sum)
		} else {
			v.recent[pos] = v.sum
		}
	}
	if v.events == 0 {
		v.first = seq
	}
	v.events++
	copy(v.prev[:], stored)
	v.next = seq + 1
	return nil
}

// Fail stops the verification at b, a break the caller found beside the
// chain (an event's authenticator, which the chain does not carry): Add
// and Finish return it from then on. The first break wins.
func (v *Verifier) Fail(b *BreakError) error {
	if v.err == nil {
		v.err = b
	}
	return v.err
}

// LastSeq is the seq of the last event Add accepted (the anchor's, or 0,
// before any).
func (v *Verifier) LastSeq() uint64 { return v.next - 1 }

// recentHash returns the hash of a recently added seq.
func (v *Verifier) recentHash(seq uint64) (string, bool) {
	last := v.next - 1
	if v.events == 0 || seq > last || last-seq >= uint64(len(v.recent)) || seq < v.first {
		return "", false
	}
	return hex.EncodeToString(v.recent[(seq-v.first)%recentHashes][:]), true
}

// Finish checks the signed head (the one given to ExpectHead when head is
// nil) and the anchor against the chain, and returns the report.
func (v *Verifier) Finish(head *SignedHead) (Report, error) {
	if head == nil {
		head = v.head
	}
	r := Report{Events: v.events, First: v.first, Last: v.next - 1, LastHash: string(v.prev[:]), Anchor: v.anchor, Head: head, Scope: ScopeTrail, HighWater: v.mark}
	if v.partial {
		r.Scope, r.Start = ScopeRange, &Link{Seq: v.start.Seq, Hash: v.start.Hash}
	}
	if v.err != nil {
		return r, v.err
	}
	if v.anchor != nil {
		if v.anchorEv == nil {
			v.err = &BreakError{Seq: v.anchor.Seq, Kind: BreakAnchor, Expected: "an audit.anchor event recording the anchor", Found: "none"}
			return r, v.err
		}
		if v.anchorEv.Seq != v.anchor.Seq || v.anchorEv.Hash != v.anchor.Hash {
			v.err = &BreakError{Seq: v.anchor.Seq, Kind: BreakAnchor,
				Expected: fmt.Sprintf("anchor seq %d hash %s (audit.anchor event)", v.anchorEv.Seq, v.anchorEv.Hash),
				Found:    fmt.Sprintf("anchor seq %d hash %s", v.anchor.Seq, v.anchor.Hash)}
			return r, v.err
		}
	}
	if v.err = v.checkHighWater(head); v.err != nil {
		return r, v.err
	}
	r.Partial = v.partial
	if head == nil {
		r.Unsigned = v.events
		if v.keys != nil && v.events > 0 && !v.partial {
			v.err = &BreakError{Seq: v.first, Kind: BreakHead, Expected: "a signed head", Found: "none"}
		}
		return r, v.err
	}
	if v.keys != nil {
		if v.err = checkSig(v.keys, head.KID, head.Sig, head.Message(), head.Seq, BreakHead, "head"); v.err != nil {
			return r, v.err
		}
	}
	last := v.next - 1
	if head.Seq > last {
		v.err = &BreakError{Seq: last + 1, Kind: BreakTruncated,
			Expected: fmt.Sprintf("events through seq %d (signed head)", head.Seq),
			Found:    fmt.Sprintf("last event seq %d", last)}
		return r, v.err
	}
	want, ok := "", false
	switch {
	case v.anchor != nil && head.Seq == v.anchor.Seq:
		want, ok = v.anchor.Hash, true
	case v.head == head && v.headSeen:
		want, ok = head.Hash, true
	case v.head != head:
		want, ok = v.recentHash(head.Seq)
	}
	if !ok {
		v.err = &BreakError{Seq: head.Seq, Kind: BreakHead, Expected: fmt.Sprintf("an event at the signed head's seq %d", head.Seq), Found: "none in the verified range"}
		return r, v.err
	}
	if want != head.Hash {
		v.err = &BreakError{Seq: head.Seq, Kind: BreakHead, Expected: "hash " + head.Hash + " (signed head)", Found: want}
		return r, v.err
	}
	r.Signed = v.keys != nil
	r.Unsigned = last - head.Seq
	return r, nil
}

// checkHighWater checks the chain and head against the high-water mark.
func (v *Verifier) checkHighWater(head *SignedHead) error {
	m := v.mark
	if m == nil {
		return nil
	}
	last := v.next - 1
	found := fmt.Sprintf("last event seq %d", last)
	if v.events == 0 {
		found = "no events"
		if v.anchor != nil {
			found = fmt.Sprintf("no events after the anchor at seq %d", v.anchor.Seq)
		}
	}
	switch {
	case v.markOK:
	case v.anchor != nil && m.Seq < v.anchor.Seq:
		// pruned behind the signed anchor
	case v.anchor != nil && m.Seq == v.anchor.Seq:
		if m.Hash != v.anchor.Hash {
			return &BreakError{Seq: m.Seq, Kind: BreakHighWater, Expected: "hash " + m.Hash + " (high-water mark)", Found: v.anchor.Hash + " (anchor)"}
		}
	default:
		return &BreakError{Seq: last + 1, Kind: BreakHighWater,
			Expected: fmt.Sprintf("events through seq %d (high-water mark: a head was signed there)", m.Seq), Found: found}
	}
	if head == nil || head.Seq < m.Seq {
		f := "no signed head"
		if head != nil {
			f = fmt.Sprintf("a signed head at seq %d", head.Seq)
		}
		return &BreakError{Seq: m.Seq, Kind: BreakHighWater, Expected: fmt.Sprintf("a signed head at or after seq %d (high-water mark)", m.Seq), Found: f}
	}
	return nil
}

func checkSig(keys KeyFunc, kid string, sig, msg []byte, seq uint64, kind BreakKind, what string) error {
	pub, ok := keys(kid)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return &BreakError{Seq: seq, Kind: kind, Expected: what + " signed by a known key", Found: fmt.Sprintf("kid %q", kid)}
	}
	if !ed25519.Verify(pub, msg, sig) {
		return &BreakError{Seq: seq, Kind: kind, Expected: "a valid " + what + " signature", Found: "a signature that does not verify"}
	}
	return nil
}

// parseHead reads seq and type from the start of a sealed line:
// {"seq":N,"time":"...","type":"T",...
func parseHead(line []byte) (seq uint64, typ string, ok bool) {
	rest, found := bytes.CutPrefix(line, []byte(seqPrefix))
	if !found {
		return 0, "", false
	}
	i := bytes.IndexByte(rest, ',')
	if i <= 0 {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return 0, "", false
	}
	rest, found = bytes.CutPrefix(rest[i:], []byte(`,"time":"`))
	if !found {
		return 0, "", false
	}
	if i = bytes.IndexByte(rest, '"'); i < 0 {
		return 0, "", false
	}
	rest, found = bytes.CutPrefix(rest[i+1:], []byte(`,"type":"`))
	if !found {
		return 0, "", false
	}
	if i = bytes.IndexByte(rest, '"'); i < 0 {
		return 0, "", false
	}
	return seq, string(rest[:i]), true
}

// anchorLink decodes the anchor recorded in an audit.anchor event line.
func anchorLink(line []byte) (Link, error) {
	var e struct {
		Details map[string]string `json:"details"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return Link{}, err
	}
	seq, err := strconv.ParseUint(e.Details[DetailAnchorSeq], 10, 64)
	if err != nil {
		return Link{}, fmt.Errorf("anchor_seq: %w", err)
	}
	return Link{Seq: seq, Hash: e.Details[DetailAnchorHash]}, nil
}

// quoteShort quotes what a trail holds where pamctl's own text was due,
// for BreakError.Found: raw in quotes, a quote doubled (Quote),
// for whatever shows the error to escape, once; at most 80 bytes of it
// (cut on a rune boundary), "..." after the quote when cut.
func quoteShort(b []byte) string {
	if len(b) > 80 {
		n := 80
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		return Quote(string(b[:n])) + "..."
	}
	return Quote(string(b))
}

// Verify walks a stored chain: anchor and head as stored (nil when absent)
// and every stored event line in seq order. It returns the first break as a
// *BreakError. See NewVerifier for what keys changes.
func Verify(anchor *Anchor, head *SignedHead, lines iter.Seq2[[]byte, error], keys KeyFunc) (Report, error) {
	v := NewVerifier(anchor, keys)
	v.ExpectHead(head)
	for line, err := range lines {
		if err != nil {
			return Report{}, err
		}
		if err := v.Add(line); err != nil {
			return v.Finish(head)
		}
	}
	return v.Finish(head)
}
