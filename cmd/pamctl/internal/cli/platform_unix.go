//go:build !windows

package cli

import (
	"net"
	"os"
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
