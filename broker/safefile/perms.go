package safefile

import (
	"errors"
	"fmt"
	"os"
)

// ErrSwappable: a local user other than the file's owner could replace
// the file or change its content.
var ErrSwappable = errors.New("writable by every local user")

// foreignError is ErrSwappable for a file or directory another user than
// root and pamctl's owns, or a group pamctl is not in may write.
type foreignError struct{ msg string }

func (e *foreignError) Error() string        { return e.msg }
func (e *foreignError) Is(target error) bool { return target == ErrSwappable }

// Kinds of file for CheckPerms.
const (
	// Public files (certificates, CA bundles) must not be replaceable:
	// whoever swaps a CA file picks who is trusted.
	Public = false
	// Secret files (keys, tokens, passwords, credential headers) must not
	// be replaceable, and should not be readable by others either.
	Secret = true
)

// CheckPerms checks who besides pamctl can get at the file at path, after
// following symlinks (a Kubernetes secret volume's name -> ..data/name ->
// ..TIMESTAMP/name: the links themselves are always 0777, so the target
// is what counts).
//
// It refuses (an error wrapping ErrSwappable, naming the file and the
// chmod or chown that fixes it) a target every local user may write, or one that
// sits, or is reached through a symlink that sits (at the end of the path
// or anywhere on it, a link to a link included), in a directory (or below
// one) every local user may write without the sticky bit: they could
// rename another file or link over it. A sticky directory (/tmp, a Kubernetes secret volume's
// 1777 root) lets nobody replace what they do not own. As OpenSSH's
// StrictModes, it also refuses a target, directory or symlink on the way
// that another user than root and pamctl's own owns (its owner may change it
// whatever its mode), or that a group pamctl is not in may write (a
// sticky directory's group can only rename its own files).
//
// For a secret it also warns (a non-empty string naming the file and the
// fix) when group or others may read it, or the group may write it,
// beyond the access pamctl itself reads it through: a file that pamctl,
// not its owner, reads through its group (a Kubernetes volume with
// fsGroup: root-owned, 0440) is fine.
//
// A path that does not exist is neither refused nor warned about here:
// whoever reads it reports that.
func CheckPerms(path string, secret bool) (warning string, err error) {
	return checkPerms(path, secret)
}

// cannotCheck refuses a path the kernel finds and the walk does not (a
// path too long once its links are spelled out, a file moved meanwhile):
// what cannot be checked is refused, not passed.
func cannotCheck(path string, err error) error {
	return &foreignError{fmt.Sprintf("%s: pamctl cannot check who may change it (%v): name the file by its real path, without symlinks on the way", path, err)}
}

// cannotCheckWay is cannotCheck for CheckWay: a loop, a path too long
// once its links are spelled out.
func cannotCheckWay(path string, err error) error {
	return &foreignError{fmt.Sprintf("%s: pamctl cannot check who may change its way (%v): use a path without symlinks", path, err)}
}

// judgeFile applies CheckPerms' rules to the file itself (fi, reached at
// real): refused when others or another user may change it, warned
// about when it is a secret others may read.
func judgeFile(path, real string, fi os.FileInfo, secret bool) (warning string, err error) {
	m := fi.Mode().Perm()
	if m&0o002 != 0 {
		return "", fmt.Errorf("%s%s is %w (mode %04o): anyone on this host could change it; run `chmod o-w %s`",
			path, via(path, real), ErrSwappable, m, real)
	}
	if who, fix := foreignControl(fi, real); who != "" {
		return "", &foreignError{fmt.Sprintf("%s%s is %s: that user or group could change it; run %s", path, via(path, real), who, fix)}
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
	fix := "`chmod go-rwx " + real + "`"
	switch acc {
	case byGroup:
		fix = "`chmod o-rwx " + real + "` (pamctl reads it through its group)"
	case byOthers:
		fix = "`chown` it to pamctl's user (or group) and `chmod go-rwx " + real + "` (`chmod o-rwx` for a group)"
	}
	who := "group or others"
	if extra&0o070 == 0 {
		who = "every local user"
	}
	return fmt.Sprintf("%s%s holds a secret and is readable by %s (mode %04o): run %s; on Kubernetes, set defaultMode: 0400 on its secret volume (0440 with fsGroup when pamctl does not run as the file's owner)",
		path, via(path, real), who, m, fix), nil
}

// CheckWay refuses (an error wrapping ErrSwappable, naming the directory
// or symlink and the fix) a path whose way another local user could
// change: a directory above it, or above a symlink followed to reach it,
// or such a symlink, that CheckPerms would refuse. The path itself is not
// judged: it is for a directory pamctl keeps its own files in (the data
// dir), whose mode its caller checks. Where the path, or a directory on
// its way, does not exist yet, what exists of the way is judged: pamctl
// would create the rest there.
func CheckWay(path string) error { return checkWay(path) }

// CheckOwner refuses (an error wrapping ErrSwappable, naming the path and
// the fix) a file or directory that another user than root and pamctl's
// owns, or that a group pamctl is not in may write: for pamctl's own files
// (the data dir, its database), whose modes and way their caller checks.
// A path that does not exist yet passes: pamctl creates it.
func CheckOwner(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if who, fix := foreignControl(fi, path); who != "" {
		return &foreignError{fmt.Sprintf("%s is %s: that user or group could change or read what pamctl keeps there; run %s", path, who, fix)}
	}
	return nil
}

// via names the target of a symlinked path, for messages.
func via(path, real string) string {
	if real == path {
		return ""
	}
	return " (" + real + ")"
}

// dirRefusal refuses (ErrSwappable, naming path, the directory d and
// the fix) a way through directory d (fi) when a local user other than
// root and pamctl's may replace names in it; nil when none may.
func dirRefusal(path, d string, fi os.FileInfo) error {
	if m := fi.Mode(); m&0o002 != 0 && m&os.ModeSticky == 0 {
		return fmt.Errorf("%s: directory %s is %w (mode %04o): anyone on this host could put another file in its place; run `chmod o-w %s` (or `chmod +t %s`)",
			path, d, ErrSwappable, m.Perm(), d, d)
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
	if who, fix := foreignControl(fi, l); who != "" {
		return &foreignError{fmt.Sprintf("%s: symlink %s on its way is %s: that user could point it at another file; run %s", path, l, who, fix)}
	}
	return nil
}

// access is how this process gets at a file.
type access int

const (
	byOwner  access = iota // its owner, or root (no other access is needed)
	byGroup                // through the file's group
	byOthers               // through the others bits
)
