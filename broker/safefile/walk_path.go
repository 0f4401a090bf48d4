//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Where the fd walk (walk_fd.go) is not built (Windows; Unix systems
// whose golang.org/x/sys/unix lacks readlinkat), the way is judged by
// path and the file opened by path after it: what is judged is what the
// path named a moment before it is read. On Windows the file opened is
// judged again by its handle (judgeOpened, perms_windows.go), and a
// junction is followed and judged as a symlink is, while a reparse point
// of another kind (a OneDrive placeholder) is judged as what it is
// (redirects, reparseTag).

func open(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(path, st.Mode())
	}
	if _, err := CheckPerms(path, Public); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	if st, err = f.Stat(); err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(path, st.Mode())
	}
	real := path
	if w, err := walk(path); err == nil {
		real = w.real
	}
	if err := judgeOpened(path, real, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkPerms(path string, secret bool) (string, error) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return "", nil // reading it reports what is wrong
	}
	w, err := walk(path)
	if err != nil {
		return "", cannotCheck(path, err)
	}
	if err := w.check(path); err != nil {
		return "", err
	}
	return judgeFile(path, w.real, st, secret)
}

func checkWay(path string) error {
	w, err := walk(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cannotCheckWay(path, err)
	}
	return w.check(path)
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
	sep := string(filepath.Separator)
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return w, err
		}
		switch {
		case filepath.VolumeName(path) != "":
			return w, fmt.Errorf("%s is relative to the working directory of drive %s, which pamctl does not know: name it from the drive's root", path, filepath.VolumeName(path))
		case strings.HasPrefix(path, sep):
			abs = filepath.VolumeName(wd) + path // \dir: from the root of the working directory's drive
		default:
			abs = wd + sep + path
		}
	}
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
		tag, err := reparseTag(next, fi)
		if err != nil {
			return w, err
		}
		if !redirects(fi.Mode(), tag) {
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

// check refuses a way through a directory another local user may replace
// names in (dirRefusal), or through a symlink another user than root and
// pamctl's owns (linkRefusal).
func (w way) check(path string) error {
	for _, d := range w.dirs {
		di, err := os.Stat(d)
		if err != nil {
			continue
		}
		if err := dirRefusal(path, d, di); err != nil {
			return err
		}
	}
	for _, l := range w.links {
		if err := linkRefusal(path, l.path, l.fi); err != nil {
			return err
		}
	}
	return nil
}
