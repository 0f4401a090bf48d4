//go:build linux || darwin || freebsd || netbsd || openbsd

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// On Unix the walk looks every name up with openat(2) in the directory it
// holds open (from "/", as the kernel does), judging each directory by
// fstat before it looks a name up in it and each symlink before it
// follows it, and the file is opened relative to the directory it was
// found in, then judged by fstat of what was opened. Nothing is looked up
// by path after it was judged: what is judged is what is read, whoever
// renames or relinks anything on the way meanwhile.

// maxLinks bounds the symlinks one walk follows, as the kernel does
// (Linux's MAXSYMLINKS): a loop ends there.
const maxLinks = 40

// testHook, when a test sets it, runs after the walk looks each name up
// (given its resolved path) and before open opens the file it walked to
// ("open"): where a race swaps what the path names.
var testHook func(at string)

func hook(at string) {
	if testHook != nil {
		testHook(at)
	}
}

// walked is the end of a walk.
type walked struct {
	real string    // the path with every symlink resolved
	dir  int       // the directory holding the last name, judged, open
	name string    // the last name: never a symlink; "." when the path ends on a directory
	fi   *statInfo // the last name's fstat (the directory's when name is ".")
	fd   int       // lookup's fd of the last name, or -1
	bad  error     // the first directory or link on the way another user controls
}

func (w *walked) close() {
	closeFD(w.fd)
	closeFD(w.dir)
}

// closeFD closes fd unless it is -1 (none).
func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// walk resolves path component by component, as the kernel does
// (relative and absolute links, ".." of the directory it is in, links
// anywhere on the path, not only at its end), holding each directory open
// and judging it (dirRefusal) before it looks a name up in it, and each
// symlink it follows (linkRefusal); w.bad is the first refusal. Whoever
// may write one of those directories may replace the name looked up in
// it, a symlink's included, and so point the path elsewhere; as the walk
// starts at the root, every directory above one is judged too. It ends on
// the last name, looked up but not opened for reading. On an error (a
// name missing, too many links) it returns what it walked so far, closed.
func walk(path string) (w *walked, err error) {
	w = &walked{dir: -1, fd: -1}
	defer func() {
		if err != nil {
			w.close()
			w.dir, w.fd = -1, -1
		}
	}()
	// Not filepath.Abs: it cleans the path as text, and "link/.." is the
	// link's target's parent to the kernel, not the link's directory. The
	// walk starts from "/" even for a relative path, so that the working
	// directory's way is judged too.
	if path == "" {
		return w, unix.ENOENT // as open("") is
	}
	abs := path
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return w, err
		}
		abs = wd + "/" + path
	}
	if w.dir, err = unix.Open("/", dirFlags, 0); err != nil {
		return w, err
	}
	dest, rest := "/", abs
	for links := 0; ; {
		if rest == "" { // the path ends on a directory: "/", "d/", "d/.", "d/.."
			if w.fi, err = fstat(w.dir, "."); err != nil {
				return w, err
			}
			w.real, w.name = dest, "."
			return w, nil
		}
		c, r, more := strings.Cut(rest, "/")
		rest = r
		switch c {
		case "", ".":
			continue
		case "..":
			// The parent of the directory held: the kernel's "..", not
			// the text's. Like every directory, it is judged before a
			// name is looked up in it.
			up, err := unix.Openat(w.dir, "..", dirFlags, 0)
			if err != nil {
				return w, err
			}
			unix.Close(w.dir)
			w.dir, dest = up, filepath.Dir(dest)
			continue
		}
		di, err := fstat(w.dir, dest)
		if err != nil {
			return w, err
		}
		if w.bad == nil {
			w.bad = dirRefusal(path, dest, di)
		}
		fd, fi, err := lookup(w.dir, c)
		if err != nil {
			return w, err
		}
		next := filepath.Join(dest, c)
		hook(next)
		if fi.Mode()&os.ModeSymlink != 0 {
			if links++; links > maxLinks {
				closeFD(fd)
				return w, fmt.Errorf("more than %d symlinks on the way (a loop?): %w", maxLinks, unix.ELOOP)
			}
			if w.bad == nil {
				w.bad = linkRefusal(path, next, fi)
			}
			to, err := readlink(w.dir, c, fd)
			closeFD(fd)
			if err != nil {
				return w, err
			}
			if to == "" {
				return w, unix.ENOENT // as the kernel reads an empty link
			}
			if strings.HasPrefix(to, "/") {
				root, err := unix.Open("/", dirFlags, 0)
				if err != nil {
					return w, err
				}
				unix.Close(w.dir)
				w.dir, dest = root, "/"
			}
			if more {
				to += "/" + rest
			}
			rest = to
			continue
		}
		if !more { // the last name
			w.real, w.name, w.fi, w.fd = next, c, fi, fd
			return w, nil
		}
		if !fi.IsDir() {
			closeFD(fd)
			return w, unix.ENOTDIR
		}
		unix.Close(w.dir)
		w.dir, dest = fd, next
	}
}

// readlinkat reads a symlink whatever the length of its target.
func readlinkat(dir int, name string) (string, error) {
	for n := 256; ; n *= 2 {
		b := make([]byte, n)
		k, err := unix.Readlinkat(dir, name, b)
		if err != nil {
			return "", err
		}
		if k < n {
			return string(b[:k]), nil
		}
	}
}

func checkPerms(path string, secret bool) (string, error) {
	w, err := walk(path)
	if err != nil {
		if _, serr := os.Stat(path); serr != nil {
			return "", nil // reading it reports what is wrong
		}
		// The kernel found it, the walk did not (a file moved meanwhile).
		return "", cannotCheck(path, err)
	}
	defer w.close()
	if !w.fi.Mode().IsRegular() {
		return "", nil // reading it reports what is wrong
	}
	if w.bad != nil {
		return "", w.bad
	}
	return judgeFile(path, w.real, w.fi, secret)
}

func checkWay(path string) error {
	w, err := walk(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cannotCheckWay(path, err)
	}
	if err == nil {
		w.close()
	}
	return w.bad
}

// openFlags opens the file walked to for reading: not a symlink put in
// its place since, not blocking on a FIFO.
const openFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

func open(path string) (*os.File, error) {
	w, err := walk(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer w.close()
	if !w.fi.Mode().IsRegular() {
		return nil, notRegular(path, w.fi.Mode()) // not opened: a device stays closed
	}
	if w.bad != nil {
		return nil, w.bad
	}
	hook("open")
	fd, err := unix.Openat(w.dir, w.name, openFlags, 0)
	for err == unix.EINTR {
		fd, err = unix.Openat(w.dir, w.name, openFlags, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	fi, err := fstat(fd, w.name)
	if err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	// What was opened is judged, not what was looked up: the same file
	// unless whoever may write its directory (judged: root or pamctl's
	// user) replaced it meanwhile.
	if !fi.Mode().IsRegular() {
		unix.Close(fd)
		return nil, notRegular(path, fi.Mode())
	}
	if _, err := judgeFile(path, w.real, fi, Public); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// statInfo is an fstat(2) (or fstatat(2)) of the walk's as an
// os.FileInfo, for the rules above.
type statInfo struct {
	name string
	st   unix.Stat_t
	ro   bool // on a read-only mount (onReadOnlyMount)
}

func fstat(fd int, name string) (*statInfo, error) {
	fi := &statInfo{name: name}
	if err := unix.Fstat(fd, &fi.st); err != nil {
		return nil, err
	}
	fi.ro = onReadOnlyMount(fd)
	return fi, nil
}

// readOnlyMount: what the walk met is on a read-only mount, where no
// one may change it (onReadOnlyMount).
func (s *statInfo) readOnlyMount() bool { return s.ro }

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) ModTime() time.Time { return time.Time{} } // no rule looks at it
func (s *statInfo) Sys() any           { return &s.st }

func (s *statInfo) Mode() os.FileMode {
	m := uint32(s.st.Mode)
	fm := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		fm |= os.ModeDevice
	case unix.S_IFCHR:
		fm |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFDIR:
		fm |= os.ModeDir
	case unix.S_IFIFO:
		fm |= os.ModeNamedPipe
	case unix.S_IFLNK:
		fm |= os.ModeSymlink
	case unix.S_IFSOCK:
		fm |= os.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
