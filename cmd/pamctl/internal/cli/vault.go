package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

// local is the data dir opened directly, for admin commands when no server runs.
type local struct {
	db    *store.DB
	vault *vault.Vault
	audit *store.AuditLog // opened by admin
}

func openLocal(ctx context.Context, cfg *Config) (*local, error) {
	if err := refuseUnderExec("open the data dir as its owner"); err != nil {
		return nil, err
	}
	if err := cfg.CheckPrivate(); err != nil {
		return nil, err
	}
	if cfg.Store.Backend == BackendEtcd {
		return nil, withCode(ExitUsage, errEtcdLocal)
	}
	db, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		return nil, err
	}
	mk, err := vault.LoadMasterKey(os.Getenv(vault.EnvMasterKey), cfg.MasterKeyFile)
	if err != nil {
		db.Close()
		return nil, err
	}
	v, err := vault.Open(ctx, db, mk, nil)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &local{db: db, vault: v}, nil
}

func (l *local) Close() error {
	var err error
	if l.audit != nil {
		err = l.audit.Close() // signs the head over what this command appended
	}
	return errors.Join(err, l.db.Close())
}

// admin returns the broker's admin service over the data dir: the same
// changes, audited the same way, as through the admin socket.
func (l *local) admin(ctx context.Context) (*broker.Admin, error) {
	kr, err := l.keyring(ctx)
	if err != nil {
		return nil, err
	}
	if l.audit == nil {
		key, err := l.vault.DerivedKey(store.AuditRecordKeyPurpose)
		if err != nil {
			return nil, err
		}
		if l.audit, err = l.db.AuditLog(store.AuditOptions{Signer: kr, RecordKey: key}); err != nil {
			return nil, err
		}
	}
	return &broker.Admin{Vault: l.vault, Keys: kr, Audit: l.audit, Via: broker.ViaDataDir}, nil
}

// keyring loads the token signing keys of the data dir.
func (l *local) keyring(ctx context.Context) (*token.Keyring, error) {
	return token.LoadKeyring(ctx, l.db, l.vault.Sealer(), maxTokenTTL, nil)
}

// openExistingLocal opens the data dir only when it and its master key
// already exist, so a read-only use (verifying an export) never creates a
// database or a key on a machine that has none.
func openExistingLocal(ctx context.Context, cfg *Config) (*local, error) {
	if cfg.Store.Backend == BackendEtcd {
		return nil, withCode(ExitUsage, errEtcdLocal)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, store.FileName)); err != nil {
		return nil, err
	}
	if os.Getenv(vault.EnvMasterKey) == "" {
		if _, err := os.Stat(cfg.MasterKeyFile); err != nil {
			return nil, err
		}
	}
	return openLocal(ctx, cfg)
}

// adminTarget runs fn against the running server's admin socket, or else
// against the data dir opened directly.
func adminTarget(cmd *cobra.Command, f *Factory, viaSocket func(*api.Client) error, direct func(*local) error) error {
	cfg, err := f.Config(cmd)
	if err != nil {
		return err
	}
	if c := f.AdminClient(cfg); c != nil {
		return viaSocket(c)
	}
	l, err := openLocal(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	return direct(l)
}

// NewCmdVault builds `pamctl vault`.
func NewCmdVault(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Manage provider keys (the real OpenAI key never leaves the vault)",
		Long: `Provider keys are sealed with AES-256-GCM under the master key
(PAMCTL_MASTER_KEY, or a key file generated once outside the data dir). These
commands talk to the running server through its admin socket, or open the
data dir directly when no server runs. A key is never printed, logged or
returned: only its fingerprint.`,
	}
	cmd.PersistentFlags().String("master-key-file", "", "master key file (default $XDG_CONFIG_HOME/pamctl/master.key)")
	cmd.AddCommand(newCmdVaultSet(f, nil), newCmdVaultLs(f, nil), newCmdVaultRm(f, nil))
	return cmd
}

// VaultSetOptions are the inputs of `pamctl vault set`.
type VaultSetOptions struct {
	f    *Factory
	Name string
}

func newCmdVaultSet(f *Factory, runF func(*cobra.Command, *VaultSetOptions) error) *cobra.Command {
	o := &VaultSetOptions{f: f}
	return &cobra.Command{
		Use:   "set NAME",
		Short: "Store a provider key read from stdin",
		Example: `  printf %s "$OPENAI_API_KEY" | pamctl vault set openai
  pamctl vault set openai < ~/openai.key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if err := vault.ValidateName(o.Name); err != nil {
				return withCode(ExitUsage, err)
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return vaultSetRun(cmd, o)
		},
	}
}

func vaultSetRun(cmd *cobra.Command, o *VaultSetOptions) error {
	ios := o.f.IO
	if ios.IsStdinTTY() {
		ios.Notef("Paste the key for %s and press Ctrl-D (it is not echoed back anywhere):", o.Name)
	}
	raw, err := io.ReadAll(io.LimitReader(ios.In, 64<<10))
	if err != nil {
		return fmt.Errorf("read secret from stdin: %w", err)
	}
	secret := vault.NewSecret(string(raw))
	if secret.Empty() {
		return withCode(ExitUsage, errors.New("no secret on stdin: pipe it in, e.g. printf %s \"$OPENAI_API_KEY\" | pamctl vault set "+o.Name))
	}
	var view api.VaultEntry
	err = adminTarget(cmd, o.f,
		func(c *api.Client) (err error) {
			view, err = c.VaultSet(cmd.Context(), o.Name, []byte(secret.Reveal()))
			return err
		},
		func(l *local) error {
			adm, err := l.admin(cmd.Context())
			if err != nil {
				return err
			}
			e, err := adm.VaultSet(cmd.Context(), o.Name, secret)
			view = api.VaultEntry{Name: e.Name, Created: e.Created, Fingerprint: e.Fingerprint}
			return err
		})
	if err != nil {
		return err
	}
	ios.Successf("Stored %s (%s)", o.Name, view.Fingerprint)
	return nil
}

// VaultLsOptions are the inputs of `pamctl vault ls`.
type VaultLsOptions struct {
	f      *Factory
	Output string
}

func newCmdVaultLs(f *Factory, runF func(*cobra.Command, *VaultLsOptions) error) *cobra.Command {
	o := &VaultLsOptions{f: f}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List provider keys (name, created, fingerprint)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return vaultLsRun(cmd, o)
		},
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func vaultLsRun(cmd *cobra.Command, o *VaultLsOptions) error {
	var entries []api.VaultEntry
	err := adminTarget(cmd, o.f,
		func(c *api.Client) (err error) {
			entries, err = c.VaultList(cmd.Context())
			return err
		},
		func(l *local) error {
			es, err := l.vault.List(cmd.Context())
			for _, e := range es {
				entries = append(entries, api.VaultEntry{Name: e.Name, Created: e.Created, Fingerprint: e.Fingerprint})
			}
			return err
		})
	if err != nil {
		return err
	}
	ios := o.f.IO
	if entries == nil {
		entries = []api.VaultEntry{}
	}
	if o.Output == "json" {
		return ios.JSON(entries)
	}
	if len(entries) == 0 {
		ios.Notef("The vault is empty. Add the OpenAI key with: printf %%s \"$OPENAI_API_KEY\" | pamctl vault set openai")
		return nil
	}
	t := ios.NewTable("NAME", "CREATED", "FINGERPRINT")
	for _, e := range entries {
		t.Row(e.Name, e.Created.Local().Format(time.DateTime), e.Fingerprint)
	}
	return t.Render()
}

func newCmdVaultRm(f *Factory, runF func(*cobra.Command, string) error) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a provider key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if runF != nil {
				return runF(cmd, name)
			}
			err := adminTarget(cmd, f,
				func(c *api.Client) error { return c.VaultRemove(cmd.Context(), name) },
				func(l *local) error {
					adm, err := l.admin(cmd.Context())
					if err != nil {
						return err
					}
					return adm.VaultRemove(cmd.Context(), name)
				})
			if err != nil {
				return err
			}
			f.IO.Successf("Removed %s", name)
			return nil
		},
	}
}

// NewCmdKeys builds `pamctl keys`.
func NewCmdKeys(f *Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the broker's token signing keys"}
	cmd.PersistentFlags().String("master-key-file", "", "master key file (default $XDG_CONFIG_HOME/pamctl/master.key)")
	var retireNow bool
	var output string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Start signing with a new key; the old one stays published until its tokens expire (--retire-now: refused at once)",
		Long: `Start signing with a new key. By default the previous key stays in the
JWKS until the tokens it signed expire (at most 8 h), so nobody notices.

--retire-now is for an incident (a signing key, a backup or the data file
may have leaked): every other key is withdrawn at once. Every access and
session token signed before is refused from then on, by this broker, by
replicas sharing the store (within a second) and by local proxies (as soon
as their link stream reports the change, at most proxy.revocation_staleness
later): everyone logs in again and agents fetch new tokens (pamctl token).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var out api.KeysRotation
			err := adminTarget(cmd, f,
				func(c *api.Client) (err error) {
					if retireNow {
						out, err = c.KeysRetireNow(cmd.Context())
						return err
					}
					out.Active, err = c.KeysRotate(cmd.Context())
					return err
				},
				func(l *local) error {
					adm, err := l.admin(cmd.Context())
					if err != nil {
						return err
					}
					if retireNow {
						out.Active, out.Withdrawn, err = adm.RetireKeysNow(cmd.Context())
						return err
					}
					out.Active, err = adm.RotateKeys(cmd.Context())
					return err
				})
			if err != nil {
				return err
			}
			if out.Withdrawn == nil {
				out.Withdrawn = []string{}
			}
			if output == "json" {
				return f.IO.JSON(out)
			}
			switch {
			case retireNow && len(out.Withdrawn) > 0:
				f.IO.Successf("New signing key %s is active; withdrew %s: every token they signed is refused now (everyone logs in again; agents run pamctl token)", out.Active, strings.Join(out.Withdrawn, ", "))
			case retireNow:
				f.IO.Successf("New signing key %s is active; no other key was still trusted", out.Active)
			default:
				f.IO.Successf("New signing key %s is active; the previous key stays in the JWKS until its tokens expire (pamctl keys rotate --retire-now refuses them at once)", out.Active)
			}
			return nil
		},
	}
	rotate.Flags().BoolVar(&retireNow, "retire-now", false, "withdraw every other signing key at once: tokens they signed are refused now (incident response)")
	addOutputFlag(rotate, &output)
	cmd.AddCommand(rotate)
	return cmd
}

// maxTokenTTL bounds every token pamctl mints (sessions are the longest).
const maxTokenTTL = 8 * time.Hour
