package store

import "syscall"

// rawFlush: none on macOS, every flush goes through the runtime.
var rawFlush func(fd uintptr) error

// blockingFlush makes the segment durable with fcntl(F_FULLFSYNC): macOS's
// fsync leaves the data in the drive's cache. A file system without it
// (SMB, some external volumes: ENOTSUP) gets fsync, as os.File.Sync, and
// so bbolt, do there.
func blockingFlush(fd uintptr) error {
	_, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_FULLFSYNC, 0)
	switch e {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return syscall.Fsync(int(fd))
	}
	return e
}
