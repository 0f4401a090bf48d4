//go:build !unix

package tlsconf

import (
	"errors"
	"runtime"
)

// mkfifo: there are no FIFOs outside Unix (the tests that use it skip
// there before calling it).
func mkfifo(string) error { return errors.New("no FIFOs on " + runtime.GOOS) }
