package cli

import (
	"strings"
	"testing"
)

// memory_limit: bytes of at least 32 MiB, 0 (automatic) or -1 (none); from
// the file or PAMCTL_MEMORY_LIMIT.
func TestMemoryLimitConfig(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"memory_limit: 1048576\n", "memory_limit 1048576: want bytes (at least 33554432"},
		{"memory_limit: -2\n", "memory_limit -2: want bytes"},
	} {
		cfg, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	for _, body := range []string{"memory_limit: 268435456\n", "memory_limit: -1\n", "memory_limit: 0\n"} {
		cfg, err := LoadConfig(writeConfig(t, body), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
	t.Setenv("PAMCTL_MEMORY_LIMIT", "134217728")
	cfg, err := LoadConfig(writeConfig(t, "# empty\n"), nil)
	if err != nil || cfg.MemoryLimit != 128<<20 {
		t.Fatalf("PAMCTL_MEMORY_LIMIT: %d %v", cfg.MemoryLimit, err)
	}
	t.Setenv("PAMCTL_MEMORY_LIMIT", "lots")
	if _, err := LoadConfig(writeConfig(t, "# empty\n"), nil); err == nil {
		t.Fatal("PAMCTL_MEMORY_LIMIT=lots accepted")
	}
}

// memory_floor: bytes from 4 MiB to 64 GiB, 0 (32 MiB) or -1 (none); from
// the file or PAMCTL_MEMORY_FLOOR.
func TestMemoryFloorConfig(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"memory_floor: 1048576\n", "memory_floor 1048576: want bytes from 4194304"},
		{"memory_floor: -2\n", "memory_floor -2: want bytes"},
		{"memory_floor: 1099511627776\n", "memory_floor 1099511627776: want bytes"},
		{"memory_floor: 64MiB\n", "memory_floor"},
	} {
		cfg, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	for _, body := range []string{"memory_floor: 134217728\n", "memory_floor: -1\n", "memory_floor: 0\n", "memory_floor: 4194304\n"} {
		cfg, err := LoadConfig(writeConfig(t, body), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
	t.Setenv("PAMCTL_MEMORY_FLOOR", "33554432")
	cfg, err := LoadConfig(writeConfig(t, "# empty\n"), nil)
	if err != nil || cfg.MemoryFloor != 32<<20 {
		t.Fatalf("PAMCTL_MEMORY_FLOOR: %d %v", cfg.MemoryFloor, err)
	}
}
