//go:build unix

package safefile

import (
	"fmt"
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
	if inGroup(int(st.Gid)) {
		return byGroup
	}
	return byOthers
}

// inGroup tells whether this process is in group gid.
func inGroup(gid int) bool {
	if gid == os.Getegid() {
		return true
	}
	gs, err := os.Getgroups()
	return err == nil && slices.Contains(gs, gid)
}

// foreignControl names who besides root and this process's user may
// change fi at path (its owner, a user of its own; or a group this
// process is not in that may write it, unless it is a sticky directory or
// a symlink, whose mode means nothing), and the command that fixes it; ""
// when no one.
func foreignControl(fi os.FileInfo, path string) (who, fix string) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", ""
	}
	m := fi.Mode()
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		chown := "chown"
		if m&os.ModeSymlink != 0 {
			chown = "chown -h"
		}
		return fmt.Sprintf("owned by uid %d", uid), fmt.Sprintf("`%s root %s` (or chown it to pamctl's user)", chown, path)
	}
	if m&os.ModeSymlink != 0 {
		return "", ""
	}
	if m&0o020 != 0 && !(m.IsDir() && m&os.ModeSticky != 0) && !inGroup(int(st.Gid)) {
		return fmt.Sprintf("writable by group %d, which pamctl is not in", st.Gid), fmt.Sprintf("`chmod g-w %s`", path)
	}
	return "", ""
}
