package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// StoreMigrateOptions are the inputs of `pamctl store migrate`.
type StoreMigrateOptions struct {
	f       *Factory
	To      string
	Replace bool
	Output  string
}

func newCmdStoreMigrate(f *Factory, runF func(*cobra.Command, *StoreMigrateOptions) error) *cobra.Command {
	o := &StoreMigrateOptions{f: f}
	cmd := &cobra.Command{
		Use:   "migrate --to etcd",
		Short: "Copy a stopped server's data dir into the etcd cluster of store.etcd",
		Long: `Copies everything in data_dir's pamctl.db into the etcd cluster configured
under store.etcd (endpoints, prefix, TLS, credentials): signing keys, the
vault (still sealed under the master key), sessions, requests, proxy
enrollments, audit sink cursors, the grants' token counters, and the whole
audit trail byte for byte with its retention anchor and signed head.

Stop the server first: the command refuses a data dir a server holds. It
refuses a prefix that already holds pamctl state unless --replace, which
deletes everything under the prefix first. Afterwards it verifies the trail
in etcd with the deployment's keys (the master key is needed) and compares
it with the trail in the data dir. Then set store.backend: etcd and start the
replicas with the same master key. The data dir is left as it was.`,
		Example: `  pamctl store migrate --to etcd
  pamctl store migrate --to etcd --replace -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.To != "etcd" {
				return withCode(ExitUsage, fmt.Errorf("--to %q: the only target is etcd (pamctl store migrate --to etcd)", o.To))
			}
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return storeMigrateRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.To, "to", "", "target backend: etcd")
	cmd.Flags().BoolVar(&o.Replace, "replace", false, "delete everything under store.etcd.prefix before copying")
	addOutputFlag(cmd, &o.Output)
	return cmd
}

// migrateResult is what `store migrate -o json` prints.
type migrateResult struct {
	Copied   etcdstore.MigrateReport `json:"copied"`
	Verified audit.Report            `json:"verified"`
}

func storeMigrateRun(cmd *cobra.Command, o *StoreMigrateOptions) error {
	ctx := cmd.Context()
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	if len(cfg.Store.Etcd.Endpoints) == 0 {
		return withCode(ExitUsage, errors.New("store.etcd.endpoints is empty: configure the target cluster under store.etcd (endpoints, prefix, tls) first"))
	}
	ecfg, err := cfg.EtcdStoreConfig()
	if err != nil {
		return withCode(ExitUsage, err)
	}
	if err := cfg.CheckPrivate(); err != nil {
		return err
	}
	mk, err := vault.LoadMasterKey(os.Getenv(vault.EnvMasterKey), cfg.MasterKeyFile)
	if err != nil {
		return err
	}
	src, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return withCode(ExitConflict, fmt.Errorf("a server is running against %s: stop it first (migration copies a stopped store, so nothing changes under it)", cfg.DataDir))
		}
		return err
	}
	defer src.Close()
	// The master key must open the source: verifying the copy needs it.
	sv, err := vault.Open(ctx, src, mk, nil)
	if err != nil {
		return err
	}
	skr, err := token.LoadKeyring(ctx, src, sv.Sealer(), maxTokenTTL, nil)
	if err != nil {
		return err
	}
	// The records are read authenticated (sealing them first if this data
	// dir is from before authenticated records), and written to etcd
	// sealed under the same key, with the key records saying so.
	if err := useRecordKey(ctx, src, skr, sv, nil, nil); err != nil {
		return err
	}
	key, err := sv.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		return err
	}
	want, err := verifyBbolt(ctx, src, skr, key)
	if err != nil {
		return fmt.Errorf("the trail in %s does not verify, so it is not migrated (run `pamctl audit verify`): %w", cfg.DataDir, err)
	}
	dst, err := etcdstore.Open(ctx, ecfg)
	if err != nil {
		return err
	}
	defer dst.Close()
	rk, err := recordKeyOf(sv)
	if err != nil {
		return err
	}
	dst.SetRecordKey(rk)
	rep, err := etcdstore.Migrate(ctx, src, dst, o.Replace, key)
	if errors.Is(err, etcdstore.ErrTargetNotEmpty) {
		return withCode(ExitConflict, err)
	}
	if err != nil {
		return fmt.Errorf("migration stopped part way (run it again with --replace): %w", err)
	}
	got, err := verifyEtcd(ctx, dst, mk)
	if err != nil {
		return fmt.Errorf("the copied trail does not verify in etcd: %w", err)
	}
	if got.Events != want.Events || got.Last != want.Last || got.LastHash != want.LastHash {
		return fmt.Errorf("the copied trail differs: etcd holds %d events through seq %d (%s), the data dir %d through %d (%s)",
			got.Events, got.Last, got.LastHash, want.Events, want.Last, want.LastHash)
	}
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(migrateResult{Copied: rep, Verified: got})
	}
	ios.Successf("Copied %s into etcd %s (prefix %s)", filepath.Join(cfg.DataDir, store.FileName), strings.Join(ecfg.Endpoints, ","), dst.Prefix())
	d := ios.NewDetails("  ", 0)
	d.Field("audit events", fmt.Sprintf("%d (seq %d to %d), verified", got.Events, got.First, got.Last))
	d.Field("signing keys", strconv.Itoa(rep.Keys))
	d.Field("vault entries", strconv.Itoa(rep.VaultEntries))
	d.Field("requests", strconv.Itoa(rep.Requests))
	d.Field("sessions", strconv.Itoa(rep.Sessions))
	d.Field("redeemed logins", strconv.Itoa(rep.Logins))
	d.Field("proxy enrollments", strconv.Itoa(rep.Enrollments))
	d.Field("sink cursors", strconv.Itoa(rep.SinkCursors))
	d.Field("grant counters", strconv.Itoa(rep.Counters))
	if err := d.Render(); err != nil {
		return err
	}
	ios.Notef("Next: set store.backend: etcd and start the replicas with the same master key.")
	return nil
}

// verifyBbolt verifies the trail of a stopped data dir, and refuses what
// its opening reports: events the segment holds that the bucket does
// not, a damaged segment, events past the last signed head that this
// deployment did not write (which etcd's log would sign over).
func verifyBbolt(ctx context.Context, db *store.DB, kr *token.Keyring, recordKey []byte) (audit.Report, error) {
	var reported error
	lg, err := db.AuditLog(store.AuditOptions{Signer: kr, Inspect: true, RecordKey: recordKey, OnError: func(err error) { reported = errors.Join(reported, err) }})
	if err != nil {
		return audit.Report{}, err
	}
	if reported != nil {
		lg.Close()
		return audit.Report{}, reported
	}
	defer lg.Close()
	return lg.Verify(ctx, audit.KeyFunc(kr.AnyPublicKey))
}

// verifyEtcd verifies the trail in etcd with the deployment's keys as
// stored there (the copied key records carry the high-water mark), and
// refuses what its opening reports, as verifyBbolt does: events past the
// last signed head without a valid authenticator, which the replicas
// would refuse to start on.
func verifyEtcd(ctx context.Context, db *etcdstore.DB, mk vault.MasterKey) (audit.Report, error) {
	la, err := inspectEtcd(ctx, db, mk, nil)
	if err != nil {
		return audit.Report{}, err
	}
	defer la.log.Close()
	if len(la.reported) > 0 {
		return audit.Report{}, errors.Join(la.reported...)
	}
	return la.log.Verify(ctx, audit.KeyFunc(la.keys.AnyPublicKey))
}

// inspectEtcd opens the trail in etcd the way `pamctl audit verify` reads
// a data dir: with the deployment's keys (from etcd, proven under mk) and
// record key, inspecting (nothing written, no head signed), and what its
// opening finds (events past the last signed head without a valid
// authenticator) in reported. Closing it leaves db open.
func inspectEtcd(ctx context.Context, db *etcdstore.DB, mk vault.MasterKey, cfg *Config) (*localAudit, error) {
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		return nil, err
	}
	kr, err := token.LoadKeyring(ctx, db, v.Sealer(), maxTokenTTL, nil)
	if err != nil {
		return nil, err
	}
	key, err := v.DerivedKey(store.AuditRecordKeyPurpose)
	if err != nil {
		return nil, err
	}
	la := &localAudit{keys: kr, cfg: cfg, vault: v, cursors: db, closeStore: func() error { return nil }}
	lg, err := db.AuditLog(ctx, etcdstore.AuditOptions{Signer: kr, Inspect: true, RecordKey: key, OnError: func(err error) { la.reported = append(la.reported, err) }})
	if err != nil {
		return nil, err
	}
	la.log = lg
	return la, nil
}

// openEtcdAudit reads the trail in etcd directly when no replica serves
// (the audit commands' last resort with store.backend etcd): with the
// master key and the store.etcd credentials, so that `audit verify` shows
// what the replicas refuse to start on. It never creates a master key.
func openEtcdAudit(ctx context.Context, cfg *Config) (auditSource, error) {
	if err := cfg.CheckPrivate(); err != nil {
		return nil, err
	}
	ecfg, err := cfg.EtcdStoreConfig()
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	if os.Getenv(vault.EnvMasterKey) == "" {
		if _, err := os.Stat(cfg.MasterKeyFile); err != nil {
			return nil, withCode(ExitUsage, fmt.Errorf("no replica is serving here, and reading the trail in etcd directly needs the deployment's master key: set %s or --master-key-file (%w)", vault.EnvMasterKey, err))
		}
	}
	mk, err := vault.LoadMasterKey(os.Getenv(vault.EnvMasterKey), cfg.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	db, err := etcdstore.Open(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("store.etcd: %w", err)
	}
	la, err := inspectEtcd(ctx, db, mk, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	la.closeStore = db.Close
	return la, nil
}

// StoreStatusOptions are the inputs of `pamctl store status`.
type StoreStatusOptions struct {
	f      *Factory
	Output string
}

func newCmdStoreStatus(f *Factory, runF func(*cobra.Command, *StoreStatusOptions) error) *cobra.Command {
	o := &StoreStatusOptions{f: f}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the store: backend, etcd members and leader, size, the audit chain's head",
		Example: `  pamctl store status
  pamctl store status -o json | jq .members`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return storeStatusRun(cmd, o)
		},
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

// storeStatus is what `store status -o json` prints.
type storeStatus struct {
	Backend string                   `json:"backend"`
	Path    string                   `json:"path,omitempty"`
	Size    int64                    `json:"size,omitempty"`
	Etcd    *etcdstore.ClusterStatus `json:"etcd,omitempty"`
	Audit   *audit.Status            `json:"audit,omitempty"`
	// Note says what could not be read (a server holds the data dir).
	Note string `json:"note,omitempty"`
}

func storeStatusRun(cmd *cobra.Command, o *StoreStatusOptions) error {
	ctx := cmd.Context()
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	var st storeStatus
	if cfg.Store.Backend == BackendEtcd {
		ecfg, err := cfg.EtcdStoreConfig()
		if err != nil {
			return withCode(ExitUsage, err)
		}
		db, err := etcdstore.Open(ctx, ecfg)
		if err != nil {
			return err
		}
		defer db.Close()
		cs, err := db.Status(ctx)
		if err != nil {
			return err
		}
		st = storeStatus{Backend: BackendEtcd, Etcd: &cs, Audit: &cs.Audit}
	} else {
		st = storeStatus{Backend: BackendBbolt, Path: filepath.Join(cfg.DataDir, store.FileName)}
		if fi, err := os.Stat(st.Path); err == nil {
			st.Size = fi.Size()
		}
		db, err := store.Open(cfg.DataDir, store.Options{})
		switch {
		case errors.Is(err, store.ErrLocked):
			st.Note = "a server holds the data dir: `pamctl audit verify` reads the chain through it"
		case err != nil:
			return err
		default:
			defer db.Close()
			lg, err := db.AuditLog(store.AuditOptions{Inspect: true})
			if err != nil {
				return err
			}
			h, err := lg.Head(ctx)
			lg.Close()
			if err != nil {
				return err
			}
			st.Audit = &h
		}
	}
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(st)
	}
	d := ios.NewDetails("", 0)
	d.Field("backend", st.Backend)
	if st.Path != "" {
		d.Field("file", st.Path)
		d.Field("size", humanBytes(st.Size))
	}
	if e := st.Etcd; e != nil {
		d.Field("prefix", e.Prefix)
		d.Field("etcd leader", dash(e.Leader))
		d.Field("db size", humanBytes(e.DBSize))
		d.Field("pamctl leader", dash(e.Replica))
	}
	if a := st.Audit; a != nil {
		d.Field("chain", fmt.Sprintf("seq %d to %d, last hash %s", a.First, a.Last.Seq, a.Last.Hash))
		if a.Head != nil {
			d.Field("signed head", fmt.Sprintf("seq %d at %s (key %s)", a.Head.Seq, a.Head.Time.Local().Format("2006-01-02 15:04:05"), a.Head.KID))
		} else {
			d.Field("signed head", "none")
		}
		if a.Anchor != nil {
			d.Field("retention anchor", fmt.Sprintf("seq %d (events before %s pruned)", a.Anchor.Seq, a.Anchor.Before.Local().Format("2006-01-02")))
		}
	}
	if st.Note != "" {
		d.Field("note", st.Note)
	}
	if err := d.Render(); err != nil {
		return err
	}
	if e := st.Etcd; e != nil {
		t := ios.NewTable("MEMBER", "ID", "CLIENT URL", "LEADER", "DB SIZE", "VERSION", "ERROR")
		for _, m := range e.Members {
			leader := ""
			if m.Leader {
				leader = "yes"
			}
			t.Row(dash(m.Name), m.ID, dash(strings.Join(m.ClientURLs, ",")), leader, humanBytes(m.DBSize), dash(m.Version), dash(m.Error))
		}
		return t.Render()
	}
	return nil
}

// humanBytes prints a size in KiB/MiB/GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
