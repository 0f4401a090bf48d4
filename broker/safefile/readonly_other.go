//go:build darwin || freebsd || netbsd || openbsd

package safefile

// onReadOnlyMount: only Linux reads a mount's read-only flag for the
// rules (readonly_linux.go); elsewhere every file is judged by its mode
// and owner, as before.
func onReadOnlyMount(int) bool { return false }
