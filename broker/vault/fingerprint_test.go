package vault_test

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/vault"
)

func fixedMaster(t *testing.T, b byte) ([]byte, vault.MasterKey) {
	t.Helper()
	raw := bytes.Repeat([]byte{b}, 32)
	mk, err := vault.ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return raw, mk
}

func wantHMAC(t *testing.T, master []byte, secret string) string {
	t.Helper()
	k, err := hkdf.Key(sha256.New, master, nil, "pamctl vault fingerprint v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(secret))
	return "hmac:" + hex.EncodeToString(m.Sum(nil)[:8])
}

// TestFingerprintIsKeyedAndHidesShortKeys is the red team's finding: the
// old fingerprint of an 8-character key showed its last 4 characters and an
// unsalted 48-bit SHA-256 prefix, so the rest brute-forced in seconds by
// anyone with audit:read. Now it is an HMAC under a key derived from the
// master key, with no characters of a short key.
func TestFingerprintIsKeyedAndHidesShortKeys(t *testing.T) {
	ctx := context.Background()
	raw, mk := fixedMaster(t, 7)
	v, err := vault.Open(ctx, newMem(), mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	const short = "abcdLT42"
	e, err := v.Set(ctx, "short", vault.NewSecret(short))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(short))
	if e.Fingerprint != wantHMAC(t, raw, short) {
		t.Fatalf("fingerprint %q, want %q", e.Fingerprint, wantHMAC(t, raw, short))
	}
	for _, leak := range []string{"LT42", "T42", hex.EncodeToString(sum[:])[:8], "sha256"} {
		if strings.Contains(e.Fingerprint, leak) {
			t.Fatalf("fingerprint %q contains %q", e.Fingerprint, leak)
		}
	}
	if got := v.Fingerprint(vault.NewSecret(short)); got != e.Fingerprint {
		t.Fatalf("not stable: %q vs %q", got, e.Fingerprint)
	}
	_, other := fixedMaster(t, 8)
	v2, err := vault.Open(ctx, newMem(), other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Fingerprint(vault.NewSecret(short)) == e.Fingerprint {
		t.Fatal("the fingerprint does not depend on the master key")
	}
}

// TestFingerprintHintOnlyForLongKeys: the last four characters are shown
// from vault.HintMinLength (40) characters up, never below.
func TestFingerprintHintOnlyForLongKeys(t *testing.T) {
	raw, mk := fixedMaster(t, 9)
	v, err := vault.Open(context.Background(), newMem(), mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 4, 12, 27, 39, 40, 51, 164} {
		s := "W"
		if n >= 4 {
			s = strings.Repeat("x", n-4) + "WXYZ"
		}
		got := v.Fingerprint(vault.NewSecret(s))
		want := wantHMAC(t, raw, s)
		if n >= vault.HintMinLength {
			want = "…WXYZ " + want
		}
		if got != want {
			t.Errorf("%d characters: %q, want %q", n, got, want)
		}
	}
}

// TestOpenUpgradesUnkeyedFingerprints: entries stored with the old form
// get the keyed one when the vault opens, so `vault ls` stops showing it.
func TestOpenUpgradesUnkeyedFingerprints(t *testing.T) {
	ctx := context.Background()
	raw, mk := fixedMaster(t, 3)
	st := newMem()
	v, err := vault.Open(ctx, st, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "abcdLT42"
	if _, err := v.Set(ctx, "openai", vault.NewSecret(secret)); err != nil {
		t.Fatal(err)
	}
	e := st.m["openai"]
	e.Fingerprint = "…**** sha256:3631dd56077a" // as the old build wrote it
	st.m["openai"] = e
	st.m["broken"] = vault.Entry{Name: "broken", Fingerprint: "…**** sha256:000000000000", Sealed: []byte("not sealed")}

	v, err = vault.Open(ctx, st, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		switch e.Name {
		case "openai":
			if e.Fingerprint != wantHMAC(t, raw, secret) {
				t.Errorf("openai fingerprint %q", e.Fingerprint)
			}
		case "broken": // does not open: left for Get to report
			if !strings.Contains(e.Fingerprint, "sha256:") {
				t.Errorf("broken entry rewritten: %q", e.Fingerprint)
			}
		}
	}
}
