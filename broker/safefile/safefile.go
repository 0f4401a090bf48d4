// Package safefile reads the small files pamctl is pointed at by
// configuration: certificates, keys, CA bundles, tokens, secrets, header
// files. Such a path may be aimed (by mistake or by whoever can change
// it) at a device, a FIFO or a huge file; reading it whole would then
// block forever or grow memory without bound. Read follows symlinks (a
// Kubernetes ..data symlink keeps working) and then insists on a regular
// file of at most a bounded size that no other local user can replace
// (CheckPerms). On Linux, macOS and the BSDs the file read is the file
// judged: the path is walked with file descriptors (openat, each directory
// and link judged by fstat as it is met) and the file opened in the
// directory it was found in and judged by fstat again, so that no rename
// or relink between judging and reading changes what is read. On Windows,
// where mode bits mean nothing, who may get at a file is read from its
// owner and DACL (dacl.go's rules, perms_windows.go), and the files
// pamctl keeps for itself are created with a protected DACL
// (MkdirPrivate, CreatePrivate). The package depends on no other package
// of pamctl, so that any package of the broker and the CLI may use it.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize is the default cap of Read: 1 MiB, far above any certificate
// chain, key, CA bundle, token or secret pamctl reads.
const MaxSize = 1 << 20

var (
	// ErrNotRegular: the path (after following symlinks) is a device,
	// FIFO, socket or directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the cap.
	ErrTooLarge = errors.New("file too large")
)

// Open opens path for reading after following symlinks, refusing anything
// but a regular file, and a file other local users could replace or change
// (CheckPerms: ErrSwappable), every time it is read. Opening does not
// block on a FIFO. Where the fd walk is built (Linux, macOS, the BSDs),
// the file returned is the one judged: it is never opened by path again.
// The caller closes the file.
func Open(path string) (*os.File, error) { return open(path) }

// Read returns the content of path, at most max bytes (MaxSize when max
// <= 0). A path that is not a regular file after following symlinks, or a
// file larger than max, is an error naming the path (wrapping
// ErrNotRegular or ErrTooLarge); its content is never read whole.
func Read(path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = MaxSize
	}
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		return nil, tooLarge(path, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, tooLarge(path, max) // it grew while being read
	}
	return b, nil
}

// ReadFile is Read with the default cap, MaxSize.
func ReadFile(path string) ([]byte, error) { return Read(path, MaxSize) }

func notRegular(path string, m os.FileMode) error {
	return fmt.Errorf("%s: %w (%s): point the setting at a regular file", path, ErrNotRegular, Kind(m))
}

// Kind names what a non-regular file is, for errors.
func Kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeSymlink != 0:
		return "a symlink"
	case m.IsRegular():
		return "a regular file"
	}
	return "mode " + m.Type().String()
}

func tooLarge(path string, max int64) error {
	return fmt.Errorf("%s: %w: larger than %d bytes, more than such a file ever holds", path, ErrTooLarge, max)
}
