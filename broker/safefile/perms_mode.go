//go:build !windows

package safefile

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// The rules of CheckPerms, CheckWay, CheckOwner and CheckPrivate by mode
// bits and owner (perms_unix.go): everywhere but Windows, whose rules read
// the DACL instead (perms_windows.go).

// judgeFile applies CheckPerms' rules to the file itself (fi, reached at
// real): refused when others or another user may change it, warned
// about when it is a secret others may read.
func judgeFile(path, real string, fi os.FileInfo, secret bool) (warning string, err error) {
	m := fi.Mode().Perm()
	switch {
	case onReadOnly(fi):
		// No one may change it, its owner included: only who may read
		// a secret is judged.
	case m&0o002 != 0:
		return "", fmt.Errorf("%s%s is %w (mode %04o): anyone on this host could change it; run `chmod o-w %s`%s",
			path, via(path, real), ErrSwappable, m, shq(real), readOnlyHint)
	default:
		if who, fix := foreignControl(fi, real); who != "" {
			return "", &foreignError{fmt.Sprintf("%s%s is %s: that user or group could change it; run %s", path, via(path, real), who, fix+readOnlyHint)}
		}
	}
	if !secret {
		return "", nil
	}
	acc := accessOf(fi)
	var extra os.FileMode // bits others than pamctl's own access class hold
	switch acc {
	case byOwner:
		extra = m & 0o074 // group read or write, others read
	case byGroup:
		extra = m & 0o004
	case byOthers:
		extra = m & 0o004
	}
	if extra == 0 {
		return "", nil
	}
	fix := "`chmod go-rwx " + shq(real) + "`"
	switch acc {
	case byGroup:
		fix = "`chmod o-rwx " + shq(real) + "` (pamctl reads it through its group)"
	case byOthers:
		fix = "`chown` it to pamctl's user (or group) and `chmod go-rwx " + shq(real) + "` (`chmod o-rwx` for a group)"
	}
	who := "group or others"
	if extra&0o070 == 0 {
		who = "every local user"
	}
	return fmt.Sprintf("%s%s holds a secret and is readable by %s (mode %04o): run %s; on Kubernetes, set defaultMode: 0400 on its secret volume (0440 with fsGroup when pamctl does not run as the file's owner)",
		path, via(path, real), who, m, fix), nil
}

// readOnlyMounter is what the fd walk's fstat (statInfo) adds to an
// os.FileInfo: whether it is on a read-only mount.
type readOnlyMounter interface{ readOnlyMount() bool }

// onReadOnly tells whether fi (the walk's fstat of a file, directory or
// symlink) is on a read-only mount, where no one may change it or a name
// in it, whatever its mode and owner: judged where the fd walk runs, on
// Linux (readonly_linux.go).
func onReadOnly(fi os.FileInfo) bool {
	r, ok := fi.(readOnlyMounter)
	return ok && r.readOnlyMount()
}

// readOnlyHint ends the fix a refusal of a file's mode or owner names:
// mounting it read-only is the other fix in a container, where the file
// comes from the host with the host's owner.
// Only on Linux, where a read-only mount passes (onReadOnly).
var readOnlyHint = func() string {
	if runtime.GOOS == "linux" {
		return " (in a container: or mount it read-only, `-v …:ro`, `readOnly: true`)"
	}
	return ""
}()

// checkOwner is CheckOwner by mode bits and owner.
func checkOwner(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if who, fix := foreignControl(fi, path); who != "" {
		return &foreignError{fmt.Sprintf("%s is %s: that user or group could change or read what pamctl keeps there; run %s", path, who, fix)}
	}
	return nil
}

// dirRefusal refuses (ErrSwappable, naming path, the directory d and
// the fix) a way through directory d (fi) when a local user other than
// root and pamctl's may replace names in it; nil when none may.
func dirRefusal(path, d string, fi os.FileInfo) error {
	if onReadOnly(fi) {
		return nil // no one may put a name in it
	}
	if m := fi.Mode(); m&0o002 != 0 && m&os.ModeSticky == 0 {
		return fmt.Errorf("%s: directory %s is %w (mode %04o): anyone on this host could put another file in its place; run `chmod o-w %s` (or `chmod +t %s`)",
			path, d, ErrSwappable, m.Perm(), shq(d), shq(d))
	}
	if who, fix := foreignControl(fi, d); who != "" {
		return &foreignError{fmt.Sprintf("%s: directory %s is %s: that user or group could put another file in its place; run %s", path, d, who, fix)}
	}
	return nil
}

// linkRefusal refuses (ErrSwappable, naming path, the link l and the fix)
// a way through symlink l (fi, its Lstat) another user than root and
// pamctl's owns.
//
// A link's owner cannot change it in place, only replace it where they may
// write its directory; yet a link of another user's is refused wherever it
// sits, as StrictModes refuses such a file or directory whatever its mode:
// in a sticky directory others may write (/tmp) the sticky bit lets its
// owner, and only them, replace it; telling the harmless places from those
// would repeat the directory rules for one more case, while a link whose
// owner is root or pamctl's (as the kubelet's, and any an admin makes) is
// one `chown -h` away.
func linkRefusal(path, l string, fi os.FileInfo) error {
	if onReadOnly(fi) {
		return nil // no one may replace it
	}
	if who, fix := foreignControl(fi, l); who != "" {
		return &foreignError{fmt.Sprintf("%s: symlink %s on its way is %s: that user could point it at another file; run %s", path, l, who, fix)}
	}
	return nil
}

func checkPrivate(what, path string, fix os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return &exposedError{fmt.Sprintf("%s %s is accessible by group or others (mode %04o); pamctl keeps secrets there and refuses it: run `chmod %o %s`",
			what, path, m, fix, shq(path))}
	}
	return nil
}

// mkdirOne creates the directory p, 0700 (a umask can only narrow it).
func mkdirOne(p string) error { return os.Mkdir(p, 0o700) }

// existingDirRefusal judges a directory MkdirPrivate found there (fi, its
// Stat): refused when others may write it without the sticky bit, or
// another user owns it, or a group pamctl is not in may write it.
func existingDirRefusal(dir string, fi os.FileInfo) error {
	if m := fi.Mode(); m&0o002 != 0 && m&os.ModeSticky == 0 {
		return fmt.Errorf("directory %s is %w (mode %04o): anyone on this host could replace what pamctl keeps there; run `chmod o-w %s` (or remove it and let pamctl create it)",
			dir, ErrSwappable, m.Perm(), shq(dir))
	}
	if who, fix := foreignControl(fi, dir); who != "" {
		return &foreignError{fmt.Sprintf("directory %s is %s: that user or group could replace what pamctl keeps there; run %s (or remove it and let pamctl create it)", dir, who, fix)}
	}
	return nil
}

func createPrivate(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// judgeOpened: the mode rules judged the file before it was opened (the
// fd walk judges what it opened itself).
func judgeOpened(string, string, *os.File) error { return nil }

// shq is path as a POSIX shell word, for the commands a refusal says to
// run: as it is when it holds only characters no shell reads specially,
// else in single quotes (each single quote in it ends them, escaped, and
// opens them again), so a path holding "; ", "$(…)", a
// space or a line break is one argument and runs nothing; "./" goes in
// front of one that starts with "-", which chmod would take for an option.
func shq(path string) string {
	if strings.HasPrefix(path, "-") {
		path = "./" + path
	}
	plain := path != ""
	for _, r := range path {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			plain = false
			break
		}
	}
	if plain {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
