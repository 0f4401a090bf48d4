package store

import (
	"crypto/ed25519"
	"crypto/sha256"

	"pamctl/broker/audit"
)

var (
	testPriv   = ed25519.NewKeyFromSeed(sha256.New().Sum([]byte("pamctl audit test key"))[:32])
	testSigner = audit.Ed25519Signer{KID: "k1", Key: testPriv}
	testKeys   = audit.Keys(map[string]ed25519.PublicKey{"k1": testPriv.Public().(ed25519.PublicKey)})
)
