package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
//
// On Windows the same rules read owners and DACLs, not modes (dacl.go):
// "others" are every account but pamctl's user, SYSTEM, Administrators
// and TrustedInstaller, and a directory others may only add names to
// passes, as a sticky one does.
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
// On Windows a directory's entries count with what they pass on to what
// pamctl creates there (OI, CI). A path that does not exist yet passes:
// pamctl creates it.
func CheckOwner(path string) error { return checkOwner(path) }

// via names the target of a symlinked path, for messages.
func via(path, real string) string {
	if real == path {
		return ""
	}
	return " (" + real + ")"
}

// access is how this process gets at a file.
type access int

const (
	byOwner  access = iota // its owner, or root (no other access is needed)
	byGroup                // through the file's group
	byOthers               // through the others bits
)

// ErrExposed: someone besides pamctl's user (and root; on Windows, SYSTEM
// and Administrators) may read or write a file or directory pamctl keeps
// to itself.
var ErrExposed = errors.New("accessible by others")

// exposedError is ErrExposed with the message that names the path and the
// fix.
type exposedError struct{ msg string }

func (e *exposedError) Error() string        { return e.msg }
func (e *exposedError) Is(target error) bool { return target == ErrExposed }

// CheckPrivate refuses (an error wrapping ErrExposed, naming what, the
// path and the fix) a file or directory pamctl keeps secrets in (its data
// dir, database, master key file) that anyone but its owner may get at,
// as ssh refuses such a private key: on Unix any group or others mode bit
// (fix is the mode `chmod` should set); on Windows an access entry for
// anyone but pamctl's user, SYSTEM and Administrators, or another owner:
// of a directory, also one it only passes on (OI, CI), since what pamctl
// creates there inherits it.
// A path that does not exist passes: pamctl creates it private
// (MkdirPrivate, CreatePrivate).
func CheckPrivate(what, path string, fix os.FileMode) error { return checkPrivate(what, path, fix) }

// MkdirPrivate creates dir and any missing parents private to pamctl's
// user: mode 0700 on Unix; on Windows with a protected DACL (full control
// for pamctl's user, SYSTEM and Administrators, nothing inherited from
// above), which what is later created in them inherits. A dir that
// already exists, or that another process creates meanwhile, is judged,
// not trusted: on Windows it must pass CheckPrivate (what pamctl later
// creates there inherits what it passes on); on Unix, where every file
// pamctl keeps is created 0600 whatever its directory, it is refused when
// another user owns it or others may write it (without the sticky bit):
// they could replace what pamctl keeps there. A parent that exists, or
// that another process creates meanwhile, is CheckWay's to judge.
func MkdirPrivate(dir string) error { return mkdirPrivate(dir) }

// mkdirPrivate creates the missing parents of dir from the top, then dir,
// each with mkdirOne, and judges dir when it exists (existingDirRefusal).
func mkdirPrivate(dir string) error {
	dir = filepath.Clean(dir)
	var missing []string // parents of dir that do not exist, nearest first
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			break // there (or unreadable: creating below it says why)
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := mkdirOne(missing[i]); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	err := mkdirOne(dir)
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is %s, not a directory: move it away or name another directory", dir, Kind(fi.Mode()))
	}
	return existingDirRefusal(dir, fi)
}

// CreatePrivate creates a new file (never an existing one: fs.ErrExist)
// for reading and writing, private to pamctl's user from its creation:
// mode 0600 on Unix (a umask can only narrow it); on Windows with a
// protected DACL as MkdirPrivate's, whatever the directory would pass on.
func CreatePrivate(path string) (*os.File, error) { return createPrivate(path) }
