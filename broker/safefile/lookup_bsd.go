//go:build darwin || freebsd || netbsd || openbsd

package safefile

import "golang.org/x/sys/unix"

// dirFlags opens a directory to look names up in. Without O_PATH, a
// directory pamctl may search but not read (0711) cannot be walked: the
// walk fails, and what cannot be checked is refused.
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC

// lookup fstatats name in directory dir without following a symlink and,
// when it is a directory, opens it (O_NOFOLLOW) and judges what was
// opened: the fd is the walk's next directory. For anything else the fd
// is -1: a device or FIFO is not opened.
func lookup(dir int, name string) (int, *statInfo, error) {
	fi := &statInfo{name: name}
	if err := unix.Fstatat(dir, name, &fi.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, nil, err
	}
	if !fi.IsDir() {
		return -1, fi, nil
	}
	fd, err := unix.Openat(dir, name, dirFlags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, nil, err
	}
	if fi, err = fstat(fd, name); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, fi, nil
}

// readlink reads the symlink name in dir. Since lookup judged it, only
// whoever may write dir could have replaced it, and dir was judged
// first: the walk has refused it already unless that is root or
// pamctl's user.
func readlink(dir int, name string, _ int) (string, error) { return readlinkat(dir, name) }
