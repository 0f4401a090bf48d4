//go:build unix

package auditsink

import (
	"errors"
	"net"
	"syscall"
)

// peek says, without blocking and without a deadline, whether the peer
// of c closed the connection (or it failed), sent something that waits to
// be read, or neither. A read with a short deadline (as syslogTarget.alive
// did alone) returns "deadline exceeded" without looking at the socket
// when the goroutine ran late, and took a closed connection for a live
// one: the next batch went into it and was lost without a sign.
func peek(c net.Conn) (st peerState, ok bool) {
	sc, isSys := c.(syscall.Conn)
	if !isSys {
		return peerIdle, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peerIdle, false
	}
	st = peerClosed
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, syscall.EINTR):
			return false // look again
		case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK):
			st = peerIdle
		case rerr == nil && n > 0:
			st = peerSent
		default:
			st = peerClosed // EOF (n == 0) or an error
		}
		return true
	})
	if err != nil {
		return peerClosed, true
	}
	return st, true
}
