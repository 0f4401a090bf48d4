//go:build unix

package store

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errBadFD is what flushing a descriptor that is not open returns.
var errBadFD error = syscall.EBADF
