package cli

import (
	"os"
	"path/filepath"
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
		{"memory_floor: \"0x2000000\"\n", "not a whole number in decimal"},
		{"memory_floor: \"0o100000000\"\n", "not a whole number in decimal"},
		{"memory_floor: 9223372036854775808\n", "9223372036854775808 is too large (at most 9223372036854775807)"},
		{"memory_limit: -9223372036854775809\n", "-9223372036854775809 is too small (at least -9223372036854775808)"},
		{"memory_limit: 99999999999999999999\n", "99999999999999999999 is too large (at most 9223372036854775807)"},
		{"memory_limit: 1e30\n", "is too large (at most 9223372036854775807)"},
		// YAML would read these as other numbers than a reader sees.
		{"memory_floor: 0100000000\n", "0100000000 is not plain decimal"},
		{"memory_floor: 0x2000000\n", "0x2000000 is not plain decimal"},
		{"memory_floor: 0o200000000\n", "0o200000000 is not plain decimal"},
		{"memory_floor: 0b10000000000000000000000000\n", "is not plain decimal"},
		{"memory_floor: 33_554_432\n", "33_554_432 is not plain decimal"},
		{"memory_floor: -012\n", "-012 is not plain decimal"},
		{"memory_limit: 9007199254740993.0\n", "9007199254740993.0 cannot be read exactly"},
		{"memory_limit: 9.007199254740993e15\n", "cannot be read exactly"},
		{"memory_limit: !!float 9007199254740993\n", "9007199254740993 cannot be read exactly"},
		{"memory_limit: !!float -9007199254740993\n", "cannot be read exactly"},
		{"memory_limit: .inf\n", "is not a whole number"},
		// A numeral too long to parse cheaply, and numbers behind tags.
		{"memory_floor: 1." + strings.Repeat("7", 2<<20) + "\n", "is too long to be a whole-number setting"},
		{"memory_floor: " + strings.Repeat("9", 41) + "\n", "is too long"},
		{"memory_floor: !!binary MTAwMDAwMDAw\n", "(a value tagged !!binary)"},
		{"memory_floor: !foo 100000000\n", "(a value tagged !foo)"},
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
		"memory_floor: 1e8\n":                100000000,
		"memory_floor: \"33554432\"\n":       33554432,
		"memory_floor: 67108864.0\n":         67108864,
		"memory_floor: +67108864\n":          67108864,
		"memory_floor: \"010\"\n":            10, // a quoted string is read in decimal, as from the environment
		"memory_floor: 0e5\n":                0,
		"memory_floor: !!int 64\n":           64,
		"memory_floor: 1e18\n":               1000000000000000000,
		"memory_floor: 0\n":                  0,
		"memory_floor: 9007199254740992.0\n": 9007199254740992,
	} {
		cfg, err := LoadConfig(writeConfig(t, body), nil)
		if err != nil || cfg.MemoryFloor != want {
			t.Errorf("%q: %v %v, want %d", body, cfg, err, want)
		}
	}
	for _, env := range []string{"32MiB", "0x2000000", "1.5", "true", " ", strings.Repeat("9", 100000)} {
		t.Setenv("PAMCTL_MEMORY_FLOOR", env)
		if _, err := LoadConfig(writeConfig(t, "# empty\n"), nil); err == nil || !strings.Contains(err.Error(), "memory_floor") ||
			!strings.Contains(err.Error(), "from the environment (PAMCTL_MEMORY_FLOOR)") || strings.Contains(err.Error(), "config.yaml") {
			t.Errorf("PAMCTL_MEMORY_FLOOR=%q: %v", env, err)
		}
	}
}

// TestConfigErrorsNameWhereTheValueCame: a PAMCTL_* variable overrides the
// file, so an error about a setting names the variable when one is set,
// the file when the value is in it, and both when both are at fault.
func TestConfigErrorsNameWhereTheValueCame(t *testing.T) {
	file := writeConfig(t, "audit:\n  head_every: often\n")
	t.Setenv("PAMCTL_MEMORY_FLOOR", "lots")
	_, err := LoadConfig(file, nil)
	if err == nil || !strings.Contains(err.Error(), "config "+file+" and the environment (PAMCTL_MEMORY_FLOOR)") {
		t.Fatalf("a bad value in each: %v", err)
	}
	os.Unsetenv("PAMCTL_MEMORY_FLOOR")
	if _, err := LoadConfig(file, nil); err == nil || !strings.Contains(err.Error(), "config "+file+":") || strings.Contains(err.Error(), "environment") {
		t.Fatalf("a bad value in the file: %v", err)
	}

	// Validation: the file is fine, the variable is not.
	dir := t.TempDir()
	good := writeConfig(t, "data_dir: "+filepath.Join(dir, "data")+"\n")
	t.Setenv("PAMCTL_PROXY_ADDR", "no-port")
	t.Setenv("PAMCTL_LOG_LEVEL", "info") // set, but not at fault: not named
	r := runCLI(t, "config", "check", "--config", good)
	if r.code != ExitUsage || !strings.Contains(r.err, "invalid configuration in "+good+" or the environment (PAMCTL_PROXY_ADDR)") || !strings.Contains(r.err, `proxy.addr: "no-port" is not host:port`) {
		t.Fatalf("config check with PAMCTL_PROXY_ADDR=no-port: %d %s", r.code, r.err)
	}
	// A file at fault, with variables set for other keys: the file alone.
	os.Unsetenv("PAMCTL_PROXY_ADDR")
	bad := writeConfig(t, "data_dir: "+filepath.Join(dir, "data")+"\nproxy:\n  addr: no-port\n")
	if r := runCLI(t, "config", "check", "--config", bad); r.code != ExitUsage || !strings.Contains(r.err, "invalid configuration in "+bad+":") {
		t.Fatalf("config check of a bad file with PAMCTL_LOG_LEVEL set: %d %s", r.code, r.err)
	}
}

// TestSettingSourcesNamesTheVariableAtFault: a variable is named when the
// error names its whole key, or its section and last part; not when its
// key is part of a longer one (ca_file in client_ca_file).
func TestSettingSourcesNamesTheVariableAtFault(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, "data_dir: "+filepath.Join(dir, "data")+"\n")
	t.Setenv("PAMCTL_CA_FILE", filepath.Join(dir, "ca.pem"))
	t.Setenv("PAMCTL_BROKER_TLS_CLIENT_CA_FILE", filepath.Join(dir, "clients.pem"))
	cfg, err := LoadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	verr := cfg.Validate()
	if verr == nil {
		t.Fatal("client_ca_file without cert_file and key_file was accepted")
	}
	if src := settingSources(cfg.File, verr); !strings.Contains(src, "PAMCTL_BROKER_TLS_CLIENT_CA_FILE") || strings.Contains(src, "PAMCTL_CA_FILE") {
		t.Errorf("sources of %q: %q", verr, src)
	}
	for text, want := range map[string]bool{
		"proxy.addr: \"x\" is not host:port":         true,
		"see proxy.addr.":                            true,
		"proxy.address is unknown":                   false,
		"the proxy.addr_v6 setting":                  false,
		"broker.tls: client_ca_file needs cert_file": false, // for proxy.addr
	} {
		if got := namesKey(text, "proxy.addr"); got != want {
			t.Errorf("namesKey(%q, proxy.addr) = %v", text, got)
		}
	}
}
