// Package audit defines pamctl's audit trail: one Event schema for every
// security-relevant action, the SHA-256 hash chain that links events, signed
// chain heads and retention anchors, verification of a stored chain or of an
// exported JSON Lines stream, and an in-process broadcaster for live
// followers.
//
// The package is pure: it never touches a file. The broker and the proxy
// depend only on Sink; the CLI and the audit API use Log. package store
// implements both on bbolt.
//
// Chain rule (see docs/audit.md for the exact bytes):
//
//	canonical = json.Marshal(event with Hash cleared)
//	hash      = hex(SHA-256(raw(prev_hash) || canonical))
//
// The first event's prev_hash is GenesisHash (64 zeros) or, after retention
// pruning, the hash recorded in the Anchor.
package audit
