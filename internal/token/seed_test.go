package token

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/otpgate/otpgate/internal/store"
)

// TestSeedActive: seeded customers (more than one batch) hold active tokens
// whose sealed secrets the code check opens, each under its own user.
func TestSeedActive(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 2*seedBatch + 7
	users := make([]User, n)
	secrets := make([][]byte, n)
	for i := range users {
		users[i] = User{Service: fmt.Sprintf("S%03d", i%3), ID: fmt.Sprintf("U%05d", i)}
		secrets[i] = []byte(fmt.Sprintf("secret-of-user-%05d", i))
	}
	if err := SeedActive(context.Background(), e.db, e.sealer, users, secrets, t0, 365*day); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, seedBatch - 1, seedBatch, n - 1} {
		u := users[i]
		if st, err := e.m.Status(context.Background(), u); err != nil || st.State != Active || !st.Expires.Equal(t0.Add(365*day)) {
			t.Fatalf("%v: status %+v, %v", u, st, err)
		}
		var c Check
		err := e.db.Update(context.Background(), func(tx store.Tx) error {
			var err error
			c, err = e.m.CheckInTx(tx, u, totpCode(secrets[i], t0), ForOperation, t0)
			return err
		})
		if err != nil || c.Outcome != CodeOK {
			t.Fatalf("%v: its own code: outcome %v, %v", u, c.Outcome, err)
		}
		// Another user's secret does not open under this user's record.
		err = e.db.Update(context.Background(), func(tx store.Tx) error {
			var err error
			c, err = e.m.CheckInTx(tx, u, totpCode(secrets[(i+1)%n], t0.Add(60e9)), ForOperation, t0.Add(60e9))
			return err
		})
		if err != nil || c.Outcome != CodeInvalid {
			t.Fatalf("%v: a neighbour's code: outcome %v, %v", u, c.Outcome, err)
		}
	}
}

func TestSeedActiveRefuses(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		name    string
		users   []User
		secrets [][]byte
		want    error
	}{
		{"fewer secrets than users", []User{{"S001", "U001"}, {"S001", "U002"}}, [][]byte{[]byte("x")}, nil},
		{"empty user ID", []User{{"S001", ""}}, [][]byte{[]byte("x")}, ErrInvalidUser},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := SeedActive(context.Background(), e.db, e.sealer, c.users, c.secrets, t0, day)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("SeedActive: %v, want %v", err, c.want)
			}
			if page, _, err := e.db.Scan(context.Background(), store.Tokens, "", 10); err != nil || len(page) != 0 {
				t.Fatalf("%d records seeded although refused (%v)", len(page), err)
			}
		})
	}
}
