package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// --file naming a terminal (/dev/tty, a pts, /dev/stdout on one) is
// refused like stdout on a terminal: the export's exact lines may hold
// characters a terminal obeys or hides. --to-terminal writes them anyway.
func TestAuditExportRefusesATerminalFile(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts := fmt.Sprintf("/dev/pts/%d", n)
	go func() { // drain what is written to the terminal
		b := make([]byte, 4096)
		for {
			if _, err := ptmx.Read(b); err != nil {
				return
			}
		}
	}()
	s := startServer(t)
	r := s.as(t, "admin", "", "audit", "export", "--file", pts)
	if r.code != ExitUsage || !strings.Contains(r.err, "is a terminal") || !strings.Contains(r.err, "--to-terminal") {
		t.Fatalf("audit export --file %s: %+v", pts, r)
	}
	if r := s.as(t, "admin", "", "audit", "export", "--file", pts, "--to-terminal"); r.code != 0 {
		t.Fatalf("audit export --file %s --to-terminal: %+v", pts, r)
	}
}
