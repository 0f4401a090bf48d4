package store

import (
	"time"

	"golang.org/x/sys/windows"
)

// cpuTime is the CPU time this process used, user and system
// (GetProcessTimes counts in 100 ns units).
func cpuTime() time.Duration {
	var created, exited, kernel, user windows.Filetime
	_ = windows.GetProcessTimes(windows.CurrentProcess(), &created, &exited, &kernel, &user)
	ticks := func(f windows.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration((ticks(kernel) + ticks(user)) * 100)
}

// errBadFD is what flushing a handle that is not open returns.
var errBadFD error = windows.ERROR_INVALID_HANDLE
