//go:build unix

package safefile

import (
	"fmt"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// owners returns a file's uid and gid, from os.Stat's or the walk's fstat.
func owners(fi os.FileInfo) (uid, gid int, ok bool) {
	switch st := fi.Sys().(type) {
	case *syscall.Stat_t:
		return int(st.Uid), int(st.Gid), true
	case *unix.Stat_t:
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}

// accessOf tells how this process reads a file: as its owner (or root),
// through its group, or as anyone else.
func accessOf(fi os.FileInfo) access {
	uid, gid, ok := owners(fi)
	if !ok {
		return byOwner
	}
	euid := os.Geteuid()
	if euid == 0 || uid == euid {
		return byOwner
	}
	if inGroup(gid) {
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
	uid, gid, ok := owners(fi)
	if !ok {
		return "", ""
	}
	m := fi.Mode()
	if uid != 0 && uid != os.Geteuid() {
		chown := "chown"
		if m&os.ModeSymlink != 0 {
			chown = "chown -h"
		}
		return fmt.Sprintf("owned by uid %d", uid), fmt.Sprintf("`%s root %s` (or chown it to pamctl's user)", chown, shq(path))
	}
	if m&os.ModeSymlink != 0 {
		return "", ""
	}
	if m&0o020 != 0 && !(m.IsDir() && m&os.ModeSticky != 0) && !inGroup(gid) {
		return fmt.Sprintf("writable by group %d, which pamctl is not in", gid), fmt.Sprintf("`chmod g-w %s`", shq(path))
	}
	return "", ""
}
