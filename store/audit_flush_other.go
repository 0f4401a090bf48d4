//go:build !linux && !darwin && !windows

package store

import "syscall"

// rawFlush: none here, every flush goes through the runtime.
var rawFlush func(fd uintptr) error

// blockingFlush is fsync where there is no fdatasync to call.
func blockingFlush(fd uintptr) error { return syscall.Fsync(int(fd)) }
