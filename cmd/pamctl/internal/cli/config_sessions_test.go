package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
)

func loadYAML(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(f, nil)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestSessionsConfig(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		idle, max  time.Duration
		err        string
	}{
		{"defaults", "", broker.DefaultIdleTimeout, broker.MaxSessionTTL, ""},
		{"both", "sessions: { idle_timeout: 15m, max_lifetime: 4h }\n", 15 * time.Minute, 4 * time.Hour, ""},
		{"idle off", "sessions: { idle_timeout: 0s }\n", 0, broker.MaxSessionTTL, ""},
		{"old name", "session_ttl: 2h\n", broker.DefaultIdleTimeout, 2 * time.Hour, ""},
		{"old and new agree", "session_ttl: 2h\nsessions: { max_lifetime: 2h }\n", broker.DefaultIdleTimeout, 2 * time.Hour, ""},
		{"old and new differ", "session_ttl: 2h\nsessions: { max_lifetime: 3h }\n", 0, 0, "old name of sessions.max_lifetime"},
		{"over the cap", "sessions: { max_lifetime: 12h }\n", 0, 0, "sessions.max_lifetime: 12h is above the maximum 8h"},
		{"negative idle", "sessions: { idle_timeout: -5m }\n", 0, 0, "sessions.idle_timeout: -5m"},
		{"bare number", "sessions: { idle_timeout: 60 }\n", 0, 0, "has no unit"},
		{"idle under a minute", "sessions: { idle_timeout: 10s }\n", 0, 0, "sessions.idle_timeout: 10s is below the minimum 1m"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadYAML(t, c.yaml)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Sessions.IdleTimeout != c.idle || cfg.Sessions.MaxLifetime != c.max {
				t.Fatalf("sessions %+v", cfg.Sessions)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("PAMCTL_SESSIONS_IDLE_TIMEOUT", "20m")
		cfg, err := loadYAML(t, "")
		if err != nil || cfg.Sessions.IdleTimeout != 20*time.Minute {
			t.Fatalf("%v %+v", err, cfg)
		}
	})
}
