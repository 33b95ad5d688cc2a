package token

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// BenchmarkCodeCheck is the check of a right code for an operation:
// decode the token record, open its sealed secret, compute the 3 codes of
// the window in constant time, encode the record with the spent step.
//
//	tx=memory  the check alone
//	tx=bbolt   the same in a committed bbolt write (one caller, so a
//	           commit and its fsyncs each time; concurrent checks share
//	           commits)
//
// go test -run '^$' -bench CodeCheck -count 10 ./internal/token | tee new.txt
func BenchmarkCodeCheck(b *testing.B) {
	key := make([]byte, seal.KeySize)
	rand.Read(key)
	sealer, err := seal.New(key)
	if err != nil {
		b.Fatal(err)
	}
	db, err := boltstore.Open(filepath.Join(b.TempDir(), "otpgate.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := New(db, sealer, &fakeNotifier{}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	u := User{"S001", "U001"}
	secret := make([]byte, 20)
	rand.Read(secret)
	ctx := context.Background()
	if err := SeedActive(ctx, db, sealer, []User{u}, [][]byte{secret}, t0, 365*day); err != nil {
		b.Fatal(err)
	}
	var orig []byte
	db.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Tokens, u.key())
		orig = append([]byte(nil), v...)
		return err
	})
	code := totpCode(secret, t0)
	check := func(tx store.Tx) error {
		// The seeded record again, so the same step is unspent each time.
		if err := tx.Put(store.Tokens, u.key(), orig); err != nil {
			return err
		}
		c, err := m.CheckInTx(tx, u, code, ForOperation, t0)
		if err == nil && c.Outcome != CodeOK {
			b.Fatalf("outcome %v", c.Outcome)
		}
		return err
	}
	b.Run("tx=memory", func(b *testing.B) {
		tx := memTx{}
		b.ReportAllocs()
		for b.Loop() {
			if err := check(tx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tx=bbolt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := db.Update(ctx, check); err != nil {
				b.Fatal(err)
			}
		}
	})
}
