//go:build linux

package safefile

import "golang.org/x/sys/unix"

// onReadOnlyMount tells whether fd (a file, directory or symlink the walk
// opened) is on a read-only mount: a container's `-v f:f:ro` bind mount,
// a Kubernetes ConfigMap or Secret volume, a read-only root filesystem,
// systemd's ProtectSystem=. There no one, its owner included, may write,
// chmod, create, rename or remove a name (EROFS), whatever its mode and
// owner say; root may remount it, and root is trusted anyway. FUSE is
// excluded: an unprivileged user may mount one (fusermount), read-only or
// not, and serves what it holds.
func onReadOnlyMount(fd int) bool {
	var s unix.Statfs_t
	if err := unix.Fstatfs(fd, &s); err != nil {
		return false
	}
	return s.Flags&unix.ST_RDONLY != 0 && uint32(s.Type) != unix.FUSE_SUPER_MAGIC
}
