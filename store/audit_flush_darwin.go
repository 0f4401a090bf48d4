package store

import "syscall"

// rawFlush: none on macOS, every flush goes through the runtime.
var rawFlush func(fd uintptr) error

// blockingFlush makes the segment durable with fcntl(F_FULLFSYNC): macOS's
// fsync leaves the data in the drive's cache (as os.File.Sync, and so
// bbolt, do there).
func blockingFlush(fd uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_FULLFSYNC, 0); e != 0 {
		return e
	}
	return nil
}
