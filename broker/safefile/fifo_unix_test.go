//go:build unix

package safefile

import "golang.org/x/sys/unix"

// mkfifo makes a FIFO at p, for the tests that a FIFO is refused
// without blocking.
func mkfifo(p string) error { return unix.Mkfifo(p, 0o600) }
