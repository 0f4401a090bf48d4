//go:build !windows

package cli

import (
	"net"
	"os"
	"strconv"
	"syscall"
)

// listenAdmin binds the admin socket, mode 0600 from the start (umask)
// and after (chmod): reaching it is the authentication.
func listenAdmin(sock string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// reloadHint says how to apply a changed config file by hand when its
// watch failed.
const reloadHint = "reload with SIGHUP (kill -HUP <pid>) or restart"

// fileOwner names the owner of the file at path for the trail ("uid
// 1000"), after symlinks; "" when it cannot be read. config.reloaded
// carries it: who last replaced the file, when no one else may write it.
func fileOwner(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return "uid " + strconv.FormatUint(uint64(st.Uid), 10)
}
