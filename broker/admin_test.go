package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/vault"
)

type failingSink struct{}

func (failingSink) Append(context.Context, *audit.Event) error { return errors.New("disk full") }

func TestAdminAuditsEveryChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, err := vault.Open(ctx, e.db, e.master, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	adm := &broker.Admin{Vault: v, Keys: e.keys, Audit: e.log, Via: broker.ViaDataDir}

	if _, err := adm.VaultSet(ctx, "Bad Name", vault.NewSecret("x")); broker.ErrorCode(err) != broker.CodeInvalid {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := adm.VaultSet(ctx, "openai", vault.NewSecret("  \n")); broker.ErrorCode(err) != broker.CodeInvalid {
		t.Fatalf("empty secret: %v", err)
	}
	ent, err := adm.VaultSet(ctx, "openai", vault.NewSecret("sk-test-abcdefghijklmnop"))
	if err != nil || ent.Sealed != nil {
		t.Fatalf("set: %+v %v", ent, err)
	}
	if err := adm.VaultRemove(ctx, "missing"); broker.ErrorCode(err) != broker.CodeNotFound {
		t.Fatalf("remove missing: %v", err)
	}
	if err := adm.VaultRemove(ctx, "openai"); err != nil {
		t.Fatal(err)
	}
	kid, err := adm.RotateKeys(ctx)
	if err != nil || kid == "" {
		t.Fatalf("rotate: %q %v", kid, err)
	}
	var got []audit.Event
	e.log.Range(ctx, 0, func(ev audit.Event) bool { got = append(got, ev); return true })
	want := []audit.Type{audit.TypeVaultSet, audit.TypeVaultRemoved, audit.TypeKeyRotated}
	if len(got) != len(want) {
		t.Fatalf("events: %+v (refused changes must not be recorded as made)", got)
	}
	for i, ev := range got {
		if ev.Type != want[i] || ev.Actor == nil || ev.Actor.Subject != broker.AdminIdentity.Subject || ev.Details["via"] != broker.ViaDataDir {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if got[0].Details["fingerprint"] != ent.Fingerprint || got[2].Target != kid {
		t.Errorf("event content: %+v %+v", got[0], got[2])
	}
	for _, ev := range got {
		if strings.Contains(ev.Target+ev.Details["fingerprint"], "abcdefghijklmnop") {
			t.Fatal("secret in the trail")
		}
	}
}

// A change the trail cannot record is reported, not answered "done".
func TestAdminReportsUnrecordedChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, err := vault.Open(ctx, e.db, e.master, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, adm := range []*broker.Admin{
		{Vault: v, Keys: e.keys, Audit: failingSink{}, Via: broker.ViaSocket},
		{Vault: v, Keys: e.keys, Via: broker.ViaSocket},
	} {
		_, err := adm.VaultSet(ctx, "openai", vault.NewSecret("sk-test-abcdefghijklmnop"))
		if err == nil || !strings.Contains(broker.ErrorMessage(err), "audit trail") {
			t.Fatalf("set with a broken trail: %v", err)
		}
		if _, err := adm.RotateKeys(ctx); err == nil {
			t.Fatal("rotate with a broken trail answered ok")
		}
	}
}

// TestAdminTrailHoldsNoKeyMaterial: a vault.set event of a short key shows
// none of its characters and no unkeyed hash of it (the red team recovered
// an 8-character key from "…LT42 sha256:3631dd56077a" in the trail).
func TestAdminTrailHoldsNoKeyMaterial(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, err := vault.Open(ctx, e.db, e.master, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	adm := &broker.Admin{Vault: v, Keys: e.keys, Audit: e.log, Via: broker.ViaDataDir}
	const secret = "abcdLT42"
	if _, err := adm.VaultSet(ctx, "short", vault.NewSecret(secret)); err != nil {
		t.Fatal(err)
	}
	list, err := adm.VaultList(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}
	sum := sha256.Sum256([]byte(secret))
	var got []audit.Event
	e.log.Range(ctx, 0, func(ev audit.Event) bool { got = append(got, ev); return true })
	if len(got) != 1 {
		t.Fatalf("events %+v", got)
	}
	for _, fp := range []string{got[0].Details["fingerprint"], list[0].Fingerprint} {
		if !strings.HasPrefix(fp, "hmac:") || strings.Contains(fp, "LT42") || strings.Contains(fp, hex.EncodeToString(sum[:4])) {
			t.Fatalf("fingerprint %q leaks the key", fp)
		}
	}
}
