package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

func openBolt(t *testing.T, c *testClock) *boltstore.DB {
	t.Helper()
	db, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "otpgate.db"), boltstore.Options{Now: c.now, TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Copy moves every live entry, values byte for byte and expiries kept, in
// batches within the transaction limits, leaves out what has expired,
// checks both stores afterwards, and refuses a target that holds data.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	c := &testClock{}
	c.ns.Store(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	from, to := openBolt(t, c), openBolt(t, c)

	sealed := make([]byte, 200) // stands for a sealed secret: copied as it is
	rand.Read(sealed)
	for i := range 3 {
		err := from.Update(ctx, func(tx store.Tx) error {
			for j := range 100 {
				if err := tx.Put(store.Tokens, fmt.Sprintf("SVC\x1fU%03d", i*100+j), sealed); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	body := make([]byte, 3*store.MaxValueSize+7)
	rand.Read(body)
	st, err := store.StageChunked(ctx, from, store.Pending, "held", body, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = from.Update(ctx, func(tx store.Tx) error {
		if err := st.Commit(tx); err != nil {
			return err
		}
		if err := store.PutTTL(tx, store.Sessions, "soon", []byte("s"), time.Minute); err != nil {
			return err
		}
		if err := store.PutTTL(tx, store.Sessions, "gone", []byte("g"), time.Second); err != nil {
			return err
		}
		_, err := store.AppendAt(tx, store.Audit, c.now(), []byte("record"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.ns.Add(int64(2 * time.Second))

	copied, err := store.Copy(ctx, from, to, c.now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[store.Bucket]store.Copied{}
	for _, cp := range copied {
		got[cp.Bucket] = cp
	}
	for b, want := range map[store.Bucket]store.Copied{
		store.Tokens:   {Bucket: store.Tokens, Copied: 300, Checked: 300},
		store.Pending:  {Bucket: store.Pending, Copied: 1, Checked: 1},
		store.Chunks:   {Bucket: store.Chunks, Copied: 4, Checked: 4},
		store.Sessions: {Bucket: store.Sessions, Copied: 1}, // "soon" is copied, not compared; "gone" is not copied
		store.Audit:    {Bucket: store.Audit, Copied: 1, Checked: 1},
	} {
		if got[b] != want {
			t.Errorf("%s: %+v, want %+v", b, got[b], want)
		}
	}
	err = to.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Tokens, "SVC\x1fU123")
		if err != nil || !bytes.Equal(v, sealed) {
			return fmt.Errorf("a token after the copy: %v", err)
		}
		held, err := store.GetChunked(tx, store.Pending, "held")
		if err != nil || !bytes.Equal(held, body) {
			return fmt.Errorf("the chunked body after the copy: %d bytes, %v", len(held), err)
		}
		if _, err := tx.Get(store.Sessions, "gone"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("the expired session was copied: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	page, _, err := to.Scan(ctx, store.Sessions, "", 10)
	if err != nil || len(page) != 1 || !page[0].Expires.Equal(c.now().Add(time.Minute-2*time.Second)) {
		t.Errorf("the expiring session after the copy: %+v, %v; want its expiry kept", page, err)
	}

	if _, err := store.Copy(ctx, from, to, c.now); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second copy into the same store: %v, want it refused", err)
	}
}
