//go:build unix

package safefile

import (
	"os"
	"slices"
	"syscall"
)

// accessOf tells how this process reads a file: as its owner (or root),
// through its group, or as anyone else.
func accessOf(fi os.FileInfo) access {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return byOwner
	}
	euid := os.Geteuid()
	if euid == 0 || uint64(st.Uid) == uint64(euid) {
		return byOwner
	}
	gid := int(st.Gid)
	if gid == os.Getegid() {
		return byGroup
	}
	if gs, err := os.Getgroups(); err == nil && slices.Contains(gs, gid) {
		return byGroup
	}
	return byOthers
}
