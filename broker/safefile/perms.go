package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return "", nil // reading it reports what is wrong
	}
	w, err := walk(path)
	if err != nil {
		// The kernel found it, the walk did not (a path too long once
		// its links are spelled out, a file moved meanwhile): what
		// cannot be checked is refused, not passed.
		return "", &foreignError{fmt.Sprintf("%s: pamctl cannot check who may change it (%v): name the file by its real path, without symlinks on the way", path, err)}
	}
	if err := w.check(path); err != nil {
		return "", err
	}
	real := w.real
	m := st.Mode().Perm()
	if m&0o002 != 0 {
		return "", fmt.Errorf("%s%s is %w (mode %04o): anyone on this host could change it; run `chmod o-w %s`",
			path, via(path, real), ErrSwappable, m, real)
	}
	if who, fix := foreignControl(st, real); who != "" {
		return "", &foreignError{fmt.Sprintf("%s%s is %s: that user or group could change it; run %s", path, via(path, real), who, fix)}
	}
	if !secret {
		return "", nil
	}
	acc := accessOf(st)
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
func CheckWay(path string) error {
	w, err := walk(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A loop, a path too long once its links are spelled out: what
		// cannot be checked is refused, not passed.
		return &foreignError{fmt.Sprintf("%s: pamctl cannot check who may change its way (%v): use a path without symlinks", path, err)}
	}
	return w.check(path)
}

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

// maxLinks bounds the symlinks one walk follows, as filepath.EvalSymlinks
// does: a loop ends there.
const maxLinks = 255

// way is what looking up a path goes through.
type way struct {
	real  string   // the path with every symlink resolved
	dirs  []string // every directory a name was looked up in, resolved, once each
	links []hop    // every symlink followed
}

// hop is a symlink followed on the way: where it is (its directory
// resolved) and its Lstat.
type hop struct {
	path string
	fi   os.FileInfo
}

// walk resolves path component by component, as filepath.EvalSymlinks
// does (relative and absolute links, "..", links anywhere on the path, not
// only at its end), and lists every directory it looks a name up in:
// whoever may write one of them may replace that name, a symlink's
// included, and so point the path elsewhere. As the walk starts at the
// root, every directory above one it lists is listed too. On an error
// (a name missing, too many links) it returns what it walked so far.
func walk(path string) (way, error) {
	var w way
	// Not filepath.Abs: it cleans the path as text, and "link/.." is the
	// link's target's parent to the kernel, not the link's directory.
	abs := path
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return w, err
		}
		abs = wd + string(filepath.Separator) + path
	}
	sep := string(filepath.Separator)
	vol := filepath.VolumeName(abs)
	dest, rest := vol+sep, abs[len(vol):]
	seen := map[string]bool{}
	for links := 0; rest != ""; {
		var c string
		c, rest, _ = strings.Cut(rest, sep)
		switch c {
		case "", ".":
			continue
		case "..":
			dest = filepath.Dir(dest) // dest has no symlinks left: ".." is its parent
			continue
		}
		if !seen[dest] {
			seen[dest] = true
			w.dirs = append(w.dirs, dest)
		}
		next := filepath.Join(dest, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return w, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			dest = next
			continue
		}
		if links++; links > maxLinks {
			return w, fmt.Errorf("%s: more than %d symlinks on the way (a loop?)", path, maxLinks)
		}
		w.links = append(w.links, hop{next, fi})
		to, err := os.Readlink(next)
		if err != nil {
			return w, err
		}
		if filepath.IsAbs(to) {
			v := filepath.VolumeName(to)
			dest, to = v+sep, to[len(v):]
		}
		if rest != "" {
			to += sep + rest
		}
		rest = to
	}
	w.real = dest
	return w, nil
}

// check refuses (ErrSwappable, naming path, the directory or link and the
// fix) a way through a directory another local user may replace names in,
// or through a symlink another user than root and pamctl's owns.
//
// A link's owner cannot change it in place, only replace it where they may
// write its directory; yet a link of another user's is refused wherever it
// sits, as StrictModes refuses such a file or directory whatever its mode:
// in a sticky directory others may write (/tmp) the sticky bit lets its
// owner, and only them, replace it; telling the harmless places from those
// would repeat the directory rules for one more case, while a link whose
// owner is root or pamctl's (as the kubelet's, and any an admin makes) is
// one `chown -h` away.
func (w way) check(path string) error {
	for _, d := range w.dirs {
		di, err := os.Stat(d)
		if err != nil {
			continue
		}
		if m := di.Mode(); m&0o002 != 0 && m&os.ModeSticky == 0 {
			return fmt.Errorf("%s: directory %s is %w (mode %04o): anyone on this host could put another file in its place; run `chmod o-w %s` (or `chmod +t %s`)",
				path, d, ErrSwappable, m.Perm(), d, d)
		}
		if who, fix := foreignControl(di, d); who != "" {
			return &foreignError{fmt.Sprintf("%s: directory %s is %s: that user or group could put another file in its place; run %s", path, d, who, fix)}
		}
	}
	for _, l := range w.links {
		if who, fix := foreignControl(l.fi, l.path); who != "" {
			return &foreignError{fmt.Sprintf("%s: symlink %s on its way is %s: that user could point it at another file; run %s", path, l.path, who, fix)}
		}
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
