package proxy

import "syscall"

// setRcvBuf sets a socket's receive buffer (SO_RCVBUF), for slowReader:
// a socket is a handle on Windows.
func setRcvBuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
