package store

import "syscall"

// rawFlush is fdatasync as a raw system call: the thread keeps its P
// (flushPolicy says when that is worth it).
func rawFlush(fd uintptr) error {
	return retryEINTR(func() error {
		if _, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0); e != 0 {
			return e
		}
		return nil
	})
}

// blockingFlush is fdatasync as the runtime issues it.
func blockingFlush(fd uintptr) error { return syscall.Fdatasync(int(fd)) }
