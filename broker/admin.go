package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/vault"
)

// AdminIdentity is who makes owner-only changes: the OS user that owns the
// data directory, acting through the admin socket or on the data dir itself.
// Its issuer name is reserved: no configured issuer may take it.
var AdminIdentity = Identity{Subject: "local-admin", Issuer: oidc.AdminIssuer, Kind: "user"}

// How an admin change reached the data: recorded in each event's details
// (key "via"), so the trail says whether a server was running.
const (
	ViaSocket  = "admin-socket" // through the running server's admin socket
	ViaDataDir = "data-dir"     // the data dir opened directly (no server running)
)

// AdminVault is the vault as admin changes need it (*vault.Vault).
type AdminVault interface {
	Set(ctx context.Context, name string, secret vault.Secret) (vault.Entry, error)
	Remove(ctx context.Context, name string) error
	List(ctx context.Context) ([]vault.Entry, error)
}

// KeyRotator starts a new token signing key (*token.Keyring): Rotate
// leaves the old one published until its tokens expire, RetireNow
// withdraws every other key at once (their tokens are refused).
type KeyRotator interface {
	Rotate(ctx context.Context) (string, error)
	RetireNow(ctx context.Context) (kid string, withdrawn []string, err error)
}

// Snapshotter writes a consistent copy of the whole data store (*store.DB):
// open is called once with the copy's exact size, before the first byte.
type Snapshotter interface {
	Snapshot(ctx context.Context, open func(size int64) (io.Writer, error)) (int64, error)
}

var _ AdminVault = (*vault.Vault)(nil)

// Admin makes the owner-only changes (vault entries, signing keys) and
// audits each one. The admin API and the CLI's data-dir path both go
// through it, so a change is recorded the same way whichever path it takes.
type Admin struct {
	Vault AdminVault
	Keys  KeyRotator
	Audit audit.Sink
	// Store makes backups; nil: backups are refused.
	Store Snapshotter
	// Via is ViaSocket or ViaDataDir.
	Via string
}

// VaultList lists the vault's entries (names, fingerprints; sealed values
// stay sealed). Reading is not audited.
func (a *Admin) VaultList(ctx context.Context) ([]vault.Entry, error) {
	es, err := a.Vault.List(ctx)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "could not list the vault", Err: err}
	}
	for i := range es {
		es[i].Sealed = nil
	}
	return es, nil
}

// VaultSet stores secret under name and records vault.set.
func (a *Admin) VaultSet(ctx context.Context, name string, secret vault.Secret) (vault.Entry, error) {
	if err := vault.ValidateName(name); err != nil {
		return vault.Entry{}, &Error{Code: CodeInvalid, Message: err.Error()}
	}
	if secret.Empty() {
		return vault.Entry{}, errorf(CodeInvalid, "the secret is empty: pipe it in, e.g. printf %%s \"$OPENAI_API_KEY\" | pamctl vault set %s", name)
	}
	e, err := a.Vault.Set(ctx, name, secret)
	if err != nil {
		return vault.Entry{}, &Error{Code: CodeInternal, Message: "could not store the secret", Err: err}
	}
	e.Sealed = nil
	return e, a.record(ctx, &audit.Event{Type: audit.TypeVaultSet, Target: name, Details: map[string]string{"fingerprint": e.Fingerprint}})
}

// VaultRemove deletes the entry name and records vault.removed.
func (a *Admin) VaultRemove(ctx context.Context, name string) error {
	if err := a.Vault.Remove(ctx, name); err != nil {
		if errors.Is(err, vault.ErrNotFound) {
			return errorf(CodeNotFound, "no vault entry named %s (see: pamctl vault ls)", name)
		}
		return &Error{Code: CodeInternal, Message: "could not remove the entry", Err: err}
	}
	return a.record(ctx, &audit.Event{Type: audit.TypeVaultRemoved, Target: name})
}

// RotateKeys starts signing with a new key and records key.rotated.
func (a *Admin) RotateKeys(ctx context.Context) (string, error) {
	kid, err := a.Keys.Rotate(ctx)
	if err != nil {
		return "", &Error{Code: CodeInternal, Message: "could not rotate the signing key", Err: err}
	}
	return kid, a.record(ctx, &audit.Event{Type: audit.TypeKeyRotated, Target: kid})
}

// RetireKeysNow is the emergency rotation: a new signing key, and every
// other key withdrawn at once, so the tokens they signed (access and
// session tokens) are refused from now on. Recorded as key.rotated with
// details.retire_now "true" and details.withdrawn (the kids, space
// separated).
func (a *Admin) RetireKeysNow(ctx context.Context) (string, []string, error) {
	kid, withdrawn, err := a.Keys.RetireNow(ctx)
	if err != nil {
		return "", nil, &Error{Code: CodeInternal, Message: "could not rotate the signing key; the old keys are still trusted: check the server log and run it again", Err: err}
	}
	return kid, withdrawn, a.record(ctx, &audit.Event{Type: audit.TypeKeyRotated, Target: kid,
		Details: map[string]string{"retire_now": "true", "withdrawn": strings.Join(withdrawn, " ")}})
}

// Backup writes a consistent copy of the data store through open (called
// with the copy's size before the first byte) and returns its size. to is
// where the caller says the copy goes (recorded, never opened here). The
// store.backup event is recorded first: if the trail cannot take it, no
// copy is made, and the copy holds the event of its own making.
func (a *Admin) Backup(ctx context.Context, to string, open func(size int64) (io.Writer, error)) (int64, error) {
	if a.Store == nil {
		return 0, errorf(CodeInternal, "this server cannot make backups; stop it and run pamctl store backup against the data dir")
	}
	if err := a.record(ctx, &audit.Event{Type: audit.TypeStoreBackup, Target: to}); err != nil {
		var be *Error
		if errors.As(err, &be) {
			be.Message = "no backup was made: the store.backup event could not be recorded in the audit trail; check the server log and run: pamctl audit verify"
		}
		return 0, err
	}
	n, err := a.Store.Snapshot(ctx, open)
	if err != nil {
		return n, &Error{Code: CodeInternal, Message: "the backup failed while copying; the copy is incomplete and must not be used", Err: err}
	}
	return n, nil
}

// record appends e as the local admin's. The change is already made when
// this runs (its fingerprint or kid goes in the event); if the trail
// refuses the event, the caller is told so rather than told "done".
func (a *Admin) record(ctx context.Context, e *audit.Event) error {
	e.Actor = actor(AdminIdentity)
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	e.Details["via"] = a.Via
	if a.Audit == nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s was done but there is no audit trail to record it in", e.Type)}
	}
	if err := a.Audit.Append(context.WithoutCancel(ctx), e); err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s was done but could not be recorded in the audit trail; check the server log and run: pamctl audit verify", e.Type), Err: err}
	}
	return nil
}
