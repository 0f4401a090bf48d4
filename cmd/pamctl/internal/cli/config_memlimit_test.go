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

// TestWholeNumberSettingsAreStrict: integer settings take whole numbers
// only, from YAML or the environment. Weak typing used to read true as 1,
// 1.9 as 1 and "010" as octal 8, and wrapped values out of range.
func TestWholeNumberSettingsAreStrict(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"memory_floor: 33554432.5\n", "is not a whole number"},
		{"memory_floor: true\n", "is not a whole number"},
		{"memory_floor: \"010\"\n", ""}, // decimal 10: then too small
		{"memory_floor: \"0x2000000\"\n", "not a whole number in decimal"},
		{"memory_floor: \"0o100000000\"\n", "not a whole number in decimal"},
		{"memory_floor: 9223372036854775808\n", "9223372036854775808 is too large (at most 9223372036854775807)"},
		{"memory_limit: -9223372036854775809\n", "too large to be read exactly"},
		{"memory_limit: 1e30\n", "too large to be read exactly"},
		{"memory_limit: \"-9223372036854775809\"\n", "-9223372036854775809 is too small"},
		{"memory_limit: [1]\n", "memory_limit"},
		{"proxy:\n  max_body: 1.5\n", "is not a whole number"},
		{"audit:\n  head_every: yes\n", "is not a whole number"},
	} {
		cfg, err := LoadConfig(writeConfig(t, tc.body), nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	for body, want := range map[string]int64{
		"memory_floor: 1e8\n":          100000000,
		"memory_floor: \"33554432\"\n": 33554432,
		"memory_floor: 67108864.0\n":   67108864,
	} {
		cfg, err := LoadConfig(writeConfig(t, body), nil)
		if err != nil || cfg.MemoryFloor != want {
			t.Errorf("%q: %v %v, want %d", body, cfg, err, want)
		}
	}
	for _, env := range []string{"32MiB", "0x2000000", "1.5", "true", " "} {
		t.Setenv("PAMCTL_MEMORY_FLOOR", env)
		if _, err := LoadConfig(writeConfig(t, "# empty\n"), nil); err == nil || !strings.Contains(err.Error(), "memory_floor") ||
			!strings.Contains(err.Error(), "from the environment (PAMCTL_MEMORY_FLOOR)") || strings.Contains(err.Error(), "config.yaml") {
			t.Errorf("PAMCTL_MEMORY_FLOOR=%q: %v", env, err)
		}
	}
}
