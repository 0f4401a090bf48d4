// Package logtest is for tests only: a Buffer that a logger (slog, log)
// or a child process writes to from other goroutines while the test reads
// what was written. It sits under broker/audit, one of the two broker
// packages the proxy may import, so the tests of the broker, the proxy,
// the audit sinks and cmd share it.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent Write and String. The
// zero value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
