package token

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/seal"
)

// A key rotation: secrets sealed under the old key keep working while it is
// retired, Reseal moves them to the new key, and then the old key can go.
func TestResealAfterKeyRotation(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"S001", "U001"}
	secret := e.seed(u, nil)

	newKey := make([]byte, seal.KeySize)
	rand.Read(newKey)
	rotated, err := seal.New(newKey)
	if err != nil {
		t.Fatal(err)
	}
	// The configuration now names the new key, with the old one retired.
	if e.sealer, err = seal.New(newKey, e.key); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if c := e.check(u, totpCode(secret, e.clk.now()), ForOperation); c.Outcome != CodeOK {
		t.Fatalf("code under a retired key: outcome %v; want CodeOK", c.Outcome)
	}

	n, err := e.m.Reseal(context.Background(), "yamada")
	if err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v; want 1 secret", n, err)
	}
	sealed := e.get(u).Secret
	got, err := rotated.Open(sealed, []byte(u.key()))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("after Reseal the new key alone does not open the secret: %v", err)
	}
	if n, _ := e.m.Reseal(context.Background(), "yamada"); n != 0 {
		t.Errorf("second Reseal resealed %d; want 0", n)
	}
	var found bool
	for _, r := range e.audit() {
		found = found || (r.Event == audit.Resealed && r.Actor == "admin:yamada")
	}
	if !found {
		t.Error("no secrets_resealed audit record naming the administrator")
	}
}
