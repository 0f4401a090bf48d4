package store

import "golang.org/x/sys/windows"

// rawFlush: none on Windows, every flush goes through the runtime.
var rawFlush func(fd uintptr) error

// blockingFlush makes the segment durable with FlushFileBuffers, Windows'
// fsync (data and metadata: there is no fdatasync). The segment's fd is
// the file's handle there (os.File.Fd, syscall.RawConn.Control).
func blockingFlush(fd uintptr) error { return windows.FlushFileBuffers(windows.Handle(fd)) }
