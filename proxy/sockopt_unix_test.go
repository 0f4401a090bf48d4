//go:build unix

package proxy

import "syscall"

// setRcvBuf sets a socket's receive buffer (SO_RCVBUF), for slowReader.
func setRcvBuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
