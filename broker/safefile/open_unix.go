//go:build unix

package safefile

import "syscall"

// openFlags keeps open(2) from blocking on a FIFO swapped in after Stat.
const openFlags = syscall.O_NONBLOCK
