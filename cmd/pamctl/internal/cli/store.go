package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/store"
)

// NewCmdStore builds `pamctl store`.
func NewCmdStore(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Operate the data store (backups, status, migration to etcd)",
	}
	cmd.PersistentFlags().String("master-key-file", "", "master key file, used when no server runs (default $XDG_CONFIG_HOME/pamctl/master.key)")
	cmd.AddCommand(newCmdStoreBackup(f, nil), newCmdStoreStatus(f, nil), newCmdStoreMigrate(f, nil))
	return cmd
}

// StoreBackupOptions are the inputs of `pamctl store backup`.
type StoreBackupOptions struct {
	f  *Factory
	To string
}

func newCmdStoreBackup(f *Factory, runF func(*cobra.Command, *StoreBackupOptions) error) *cobra.Command {
	o := &StoreBackupOptions{f: f}
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Write a consistent copy of the data store (while serving, or with the server stopped)",
		Long: `Writes a consistent copy of pamctl.db: the signing keys, the vault (still
sealed under the master key), requests, limit counters and the audit trail,
all as of one instant. While a server runs, the copy is made by the server
in one read transaction and streamed through the admin socket, so serving
and appending continue; with no server, the data dir is opened directly.

The file is created with mode 0600 and never overwritten. The copy is
checked (size, every page, schema) before the command reports success. A
store.backup event is recorded first; the copy holds it. The copy is as
secret as the data dir: it holds sealed provider keys, and whoever also has
the master key can open them. To restore, see docs/operations.md.`,
		Example: `  pamctl store backup --to /var/backups/pamctl/pamctl-$(date +%F).db
  kubectl exec pamctl-0 -- pamctl store backup --to - > pamctl.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.To == "" {
				return withCode(ExitUsage, errors.New("say where the copy goes: --to FILE (or --to - for stdout)"))
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return storeBackupRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.To, "to", "", "file to create (refused if it exists); - writes to stdout")
	return cmd
}

func storeBackupRun(cmd *cobra.Command, o *StoreBackupOptions) error {
	ios := o.f.IO
	ctx := cmd.Context()
	if cfg, err := o.f.Config(cmd); err == nil && cfg.Store.Backend == BackendEtcd {
		return withCode(ExitUsage, errEtcdBackup)
	}
	target := "stdout"
	if o.To != "-" {
		abs, err := filepath.Abs(o.To)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("--to %s: %w", o.To, err))
		}
		o.To, target = abs, abs
	} else if ios.IsStdoutTTY() {
		return withCode(ExitUsage, errors.New("--to - writes a binary file to stdout: redirect it, e.g. pamctl store backup --to - > pamctl.db"))
	}
	var via string
	fill := func(w io.Writer) (int64, error) {
		var n int64
		err := adminTarget(cmd, o.f,
			func(c *api.Client) (err error) {
				via = "the running server"
				n, err = c.StoreBackup(ctx, target, w)
				return err
			},
			func(l *local) error {
				via = "the data dir (no server running)"
				adm, err := l.admin(ctx)
				if err != nil {
					return err
				}
				adm.Store = signedSnapshot{db: l.db, audit: l.audit}
				n, err = adm.Backup(ctx, target, func(int64) (io.Writer, error) { return w, nil })
				return err
			})
		return n, err
	}
	if o.To == "-" {
		n, err := fill(ios.Out)
		if err != nil {
			return err
		}
		ios.Successf("Wrote a consistent copy of the data store (%d bytes) to stdout, made by %s", n, via)
		return nil
	}
	info, err := writeBackupFile(o.To, fill)
	if err != nil {
		return err
	}
	ios.Successf("Wrote a consistent copy of the data store to %s (%d bytes, audit events through seq %d), made by %s", o.To, info.Bytes, info.AuditSeq, via)
	return nil
}

// signedSnapshot signs the audit head over what this command appended
// (its store.backup event) before copying, so a copy taken with the server
// stopped has no unsigned tail.
type signedSnapshot struct {
	db    *store.DB
	audit *store.AuditLog
}

func (s signedSnapshot) Snapshot(ctx context.Context, open func(int64) (io.Writer, error)) (int64, error) {
	if _, err := s.audit.SignHead(ctx); err != nil {
		return 0, err
	}
	return s.db.Snapshot(ctx, open)
}

// writeBackupFile creates path (mode 0600, on Windows a DACL for pamctl's
// user, SYSTEM and Administrators only: safefile.CreatePrivate; refusing
// an existing file or symlink), fills it, syncs it and its directory, and
// checks the copy. A failed or incomplete copy is removed, never left
// looking like a backup.
func writeBackupFile(path string, fill func(io.Writer) (int64, error)) (store.BackupInfo, error) {
	f, err := safefile.CreatePrivate(path)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return store.BackupInfo{}, withCode(ExitConflict, fmt.Errorf("%s already exists: a backup never overwrites a file; choose a new name or remove it first", path))
		}
		return store.BackupInfo{}, fmt.Errorf("create %s: %w", path, err)
	}
	fail := func(err error) (store.BackupInfo, error) {
		f.Close()
		os.Remove(path)
		return store.BackupInfo{}, err
	}
	// O_EXCL created it, but with a umask that could only narrow 0600; make
	// sure no wider mode survives from anywhere.
	if err := f.Chmod(0o600); err != nil {
		return fail(fmt.Errorf("chmod %s: %w", path, err))
	}
	if _, err := fill(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync %s: %w", path, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return store.BackupInfo{}, fmt.Errorf("close %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // the new name is durable too
		d.Close()
	}
	info, err := store.CheckBackup(path)
	if err != nil {
		os.Remove(path)
		return store.BackupInfo{}, fmt.Errorf("the copy failed its check and was removed: %w", err)
	}
	return info, nil
}
