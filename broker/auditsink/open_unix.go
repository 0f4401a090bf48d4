//go:build unix

package auditsink

import "syscall"

// appendFlags are added to the flags that open an audit output file: a
// symlink at its path is refused (ELOOP), not followed to wherever it
// points, and a FIFO swapped in does not block the open.
const appendFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
