package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requests.retention defaults to 90d, takes durations with days, and
// refuses negative values and values under an hour (a bare number is
// nanoseconds).
func TestRequestsRetentionConfig(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	load := func(yaml string) (*Config, error) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadConfig(file, nil)
	}
	cfg, err := load("{}\n")
	if err != nil || cfg.Requests.Retention != 90*24*time.Hour {
		t.Fatalf("default: %v %v", err, cfg)
	}
	for yaml, want := range map[string]time.Duration{
		"requests: { retention: 30d }\n": 30 * 24 * time.Hour,
		"requests: { retention: 36h }\n": 36 * time.Hour,
		"requests: { retention: 0s }\n":  0,
	} {
		cfg, err := load(yaml)
		if err != nil {
			t.Fatalf("%s: %v", yaml, err)
		}
		if cfg.Requests.Retention != want {
			t.Errorf("%s: %v, want %v", yaml, cfg.Requests.Retention, want)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", yaml, err)
		}
	}
	for _, yaml := range []string{"requests: { retention: 90 }\n", "requests: { retention: 30m }\n", "requests: { retention: -1h }\n"} {
		cfg, err := load(yaml)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "requests.retention") {
			t.Errorf("%s: accepted (%v)", yaml, err)
		}
	}
}
