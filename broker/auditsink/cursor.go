package auditsink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/pamctl/pamctl/broker/audit"
)

// CursorKeyPurpose is what Options.CursorKey is derived for
// (vault.DerivedKey): a key kept from whoever can write the data dir, so a
// cursor they write does not authenticate.
const CursorKeyPurpose = "audit sink cursor authenticator"

// cursorMAC authenticates a cursor to its sink: HMAC-SHA256 over the sink
// name and every field of the cursor, hex.
func cursorMAC(key []byte, name string, c Cursor) string {
	h := hmac.New(sha256.New, key)
	var b [8]byte
	h.Write([]byte("pamctl audit sink cursor v1\x00"))
	binary.BigEndian.PutUint64(b[:], uint64(len(name)))
	h.Write(b[:])
	h.Write([]byte(name))
	for _, v := range []uint64{c.Seq, c.HeadSeq, uint64(c.Updated.Unix()), uint64(c.Updated.Nanosecond())} {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SealCursor returns c with its authenticator for sink name under key
// (without a key, c without one).
func SealCursor(key []byte, name string, c Cursor) Cursor {
	c.MAC = ""
	if key != nil {
		c.MAC = cursorMAC(key, name, c)
	}
	return c
}

// CursorCheck is what TrustCursor found.
type CursorCheck struct {
	// Rejected: the stored cursor is not trusted, and delivery restarts at
	// the first retained event. Problem says why and what to do.
	Rejected bool
	Problem  string
	// Legacy: the cursor had no authenticator and was accepted as one
	// written by a pamctl that did not authenticate cursors (Problem says
	// so); it is to be saved again, authenticated.
	Legacy bool
}

// TrustCursor decides where sink name resumes given its stored cursor c
// (found: there is one) and the trail st. A sink without a cursor starts
// at the first retained event. A cursor is never trusted past the end of
// the trail (its seq after the last event, or its head after the last
// signed head), nor, with a key, when its authenticator is wrong; without
// an authenticator only when legacyOK (no stored cursor carries one and
// the deployment is not past the upgrade, Options.LegacyCursorsEnded: the
// data dir was last run by a pamctl that did not write them) and it is
// not past the end. An untrusted cursor is replaced by the zero cursor:
// the sink gets again what it may already hold (duplicates), never skips.
func TrustCursor(key []byte, name string, c Cursor, found bool, st audit.Status, legacyOK bool) (Cursor, CursorCheck) {
	if !found {
		return Cursor{}, CursorCheck{}
	}
	var lastHead uint64
	if st.Head != nil {
		lastHead = st.Head.Seq
	}
	const redo = "delivery restarts at the first retained event, so the sink receives again events it may hold (it can drop them by seq and hash) and skips none"
	const who = "unless the trail was restored without its cursors, someone who can write the data dir (or the etcd prefix) without the master key changed it: find out who, and run `pamctl audit verify`"
	reject := func(what string) (Cursor, CursorCheck) {
		return Cursor{}, CursorCheck{Rejected: true, Problem: fmt.Sprintf("stored cursor of sink %s (seq %d, head %d) %s; %s; %s", name, c.Seq, c.HeadSeq, what, redo, who)}
	}
	if c.Seq > st.Last.Seq || c.HeadSeq > lastHead {
		return reject(fmt.Sprintf("is past the end of the trail (last event %d, last signed head %d)", st.Last.Seq, lastHead))
	}
	if key == nil {
		return c, CursorCheck{}
	}
	switch {
	case c.MAC == "" && legacyOK:
		return c, CursorCheck{Legacy: true, Problem: fmt.Sprintf("stored cursor of sink %s (seq %d, head %d) has no authenticator: accepted as written by a pamctl that did not authenticate cursors, since it is within the trail, and saved again authenticated", name, c.Seq, c.HeadSeq)}
	case c.MAC == "":
		return reject("has no authenticator, while this deployment authenticates cursors (other sinks' cursors have one, or it is past the upgrade)")
	case !hmac.Equal([]byte(c.MAC), []byte(cursorMAC(key, name, c))):
		return reject("has a wrong authenticator (not written by this deployment's master key)")
	}
	return c, CursorCheck{}
}

// LegacyCursorsOK reports whether cursors without an authenticator may be
// accepted (TrustCursor's legacyOK): none of the stored cursors has one.
func LegacyCursorsOK(cursors map[string]Cursor) bool {
	for _, c := range cursors {
		if c.MAC != "" {
			return false
		}
	}
	return true
}
