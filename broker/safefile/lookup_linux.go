//go:build linux

package safefile

import "golang.org/x/sys/unix"

// dirFlags opens a directory to look names up in, and nothing else: O_PATH
// needs no read permission (a 0711 directory walks as the kernel walks it).
const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC

// lookup opens name in directory dir without following a symlink
// (O_PATH|O_NOFOLLOW: a device or FIFO is not opened, only named) and
// fstats what it opened. The fd is the walk's next directory when it is
// one.
func lookup(dir int, name string) (int, *statInfo, error) {
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	fi, err := fstat(fd, name)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, fi, nil
}

// readlink reads the symlink lookup opened as fd: that very link (an
// empty name reads an O_PATH fd's), not what has its name by now.
func readlink(_ int, _ string, fd int) (string, error) { return readlinkat(fd, "") }
