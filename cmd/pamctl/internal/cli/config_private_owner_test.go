//go:build unix

package cli

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/store"
)

// From red-team pass 3: CheckPrivate judges the data dir's mode and
// (CheckWay) the way to it, but not who owns the data dir itself or the
// database in it. A data dir (or pamctl.db) that another local user owns,
// mode 0700 (0600), passes: when pamctl runs as root (containers, a
// systemd unit without User=) that user may replace, roll back or delete
// the database and the audit segment whatever the modes, and read them.
// The master key file is refused for this (CheckPerms: "owned by uid");
// the data dir, which holds what the master key protects, is not.
func TestCheckPrivateDataDirOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	t.Setenv("PAMCTL_MASTER_KEY", "")
	for _, tc := range []struct {
		name  string
		chown func(d string) string // what it makes uid 4242's
	}{
		{"the data dir", func(d string) string { return d }},
		{"the database", func(d string) string { return filepath.Join(d, store.FileName) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "pamctl") // root's way: /tmp, root's 0700 temp dir
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, store.FileName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			p := tc.chown(d)
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			err := (&Config{DataDir: d}).CheckPrivate()
			if !errors.Is(err, safefile.ErrSwappable) {
				t.Fatalf("CheckPrivate with %s (%s) owned by uid 4242, mode 0700/0600: %v; want ErrSwappable naming it", tc.name, p, err)
			}
		})
	}
}
