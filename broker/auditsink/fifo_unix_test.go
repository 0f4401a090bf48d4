//go:build unix

package auditsink_test

import "syscall"

// mkfifo makes a FIFO at p, for the tests that a FIFO is refused
// without blocking.
func mkfifo(p string) error { return syscall.Mkfifo(p, 0o600) }
