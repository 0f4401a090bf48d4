package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestDurationsTakeWholeDays: config durations and the --ttl and --since
// flags read the same syntax: Go durations plus whole days, within what a
// time.Duration holds (no silent wrap to a negative lifetime).
func TestDurationsTakeWholeDays(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"2d": 48 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, " 3d ": 72 * time.Hour,
		"106751d": 106751 * 24 * time.Hour,
	} {
		var d time.Duration
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.Var(durationFlag{&d}, "ttl", "")
		if err := fs.Parse([]string{"--ttl", in}); err != nil || d != want {
			t.Errorf("--ttl %s: %v %v, want %v", in, d, err, want)
		}
	}
	// A flag's 0 or negative duration would silently mean its default.
	for _, in := range []string{"1.5d", "106752d", "99999999999d", "-1d", "+1d", "2", "d", "2dd", "2d-1h", "2d+1h", "106751d24h", "",
		"0", "0d", "0s", "-5m", "-1d12h"} {
		var d time.Duration
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.Var(durationFlag{&d}, "ttl", "")
		if err := fs.Parse([]string{"--ttl", in}); err == nil {
			t.Errorf("--ttl %q accepted as %v", in, d)
		} else if !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("--ttl %q: %v: no example of what to write", in, err)
		}
	}
	// The config's durations may be 0 (a setting's "off"); Validate
	// bounds each one.
	if d, err := ParseDuration("0d"); err != nil || d != 0 {
		t.Errorf("0d in the config: %v %v", d, err)
	}
}
