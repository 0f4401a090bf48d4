// Package auditsink streams the audit trail to outside systems (syslog,
// HTTP collectors, JSON Lines files) and anchors its signed heads off-host.
//
// Each sink has a shipper: a goroutine that reads the stored trail from the
// sink's cursor (kept in the store through CursorStore), delivers the events
// in seq order in batches, then advances and persists the cursor. Delivery
// is at least once: a batch not recorded as delivered (a crash or a failed
// cursor write after the delivery, a collector that answers after the
// timeout or fails after storing it) is sent again. Cursors are
// authenticated under a key of the master key and never followed past the
// end of the trail (TrustCursor): a cursor that is not trusted restarts
// delivery at the first retained event, never skips. An event too large
// for a sink's transport goes as a stand-in record (StandIn), so it never
// holds back the others. Appends never wait for a shipper; a shipper is woken by
// appends and by a poll timer, and retries a failing sink with exponential
// backoff. Signed heads are delivered after the events they cover, so a
// receiver can check every head against the events it holds.
//
// The package is pure of the store: the trail is read through Source and the
// cursors are persisted through CursorStore.
package auditsink
