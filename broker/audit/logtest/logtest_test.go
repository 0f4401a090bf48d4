package logtest_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/audit/logtest"
)

// Loggers on many goroutines write while the test reads: every line
// arrives whole, and -race finds no unguarded access.
func TestBufferTakesConcurrentWrites(t *testing.T) {
	var buf logtest.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				log.Info("line", "g", g, "i", i)
				_ = buf.String()
			}
		})
	}
	wg.Wait()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 400 {
		t.Fatalf("%d lines, want 400", n)
	}
	for g := range 8 {
		if !strings.Contains(out, fmt.Sprintf("g=%d i=49\n", g)) {
			t.Fatalf("goroutine %d's last line is missing:\n%s", g, out)
		}
	}
}
