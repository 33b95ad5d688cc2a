package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/storetest"
)

var ctx = context.Background()

// TestConformance holds bbolt to the contract every store keeps, with the
// transaction limits an etcd store has turned on.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return openWith(t, Options{Now: now, TxnLimits: true})
	})
}

// open opens a fresh database in a temporary folder and closes it when the
// test ends.
func open(t *testing.T) *DB {
	t.Helper()
	return openWith(t, Options{})
}

func openWith(t *testing.T, o Options) *DB {
	t.Helper()
	o.Timeout = time.Second
	db, err := OpenWith(filepath.Join(t.TempDir(), "otpgate.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func put(t *testing.T, db *DB, b store.Bucket, key, value string) {
	t.Helper()
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.Put(b, key, []byte(value)) }); err != nil {
		t.Fatalf("Put %s/%s: %v", b, key, err)
	}
}

// get returns the value at key, or ErrNotFound; the value is copied out of
// the transaction.
func get(t *testing.T, db *DB, b store.Bucket, key string) (string, error) {
	t.Helper()
	var v string
	err := db.View(ctx, func(tx store.Tx) error {
		got, err := tx.Get(b, key)
		v = string(got)
		return err
	})
	return v, err
}

// entries lists a bucket's unexpired keys and values in Scan order.
func entries(t *testing.T, db *DB, b store.Bucket) (keys, values []string) {
	t.Helper()
	after := ""
	for range 1000 {
		page, next, err := db.Scan(ctx, b, after, store.MaxScanLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range page {
			keys, values = append(keys, kv.Key), append(values, string(kv.Value))
		}
		if next == "" {
			return keys, values
		}
		after = next
	}
	t.Fatalf("%s: more than 1000 pages", b)
	return nil, nil
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenRestrictsFileTo0600(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) // makes what is there before Open
	}{
		{"new file in a new folder", func(*testing.T, string) {}},
		{"existing database with 0644", func(t *testing.T, path string) {
			db, err := Open(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			put(t, db, store.Tokens, "SVC01\x1ftaro", "kept")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"existing empty file with 0644", func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "var", "lib", "otpgate", "otpgate.db")
			tc.prepare(t, path)
			db, err := Open(path, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got := mode(t, path); got != 0o600 {
				t.Errorf("file mode %v, want 0600", got)
			}
			if db.Path() != path {
				t.Errorf("Path() = %q, want %q", db.Path(), path)
			}
			if tc.name == "existing database with 0644" {
				if v, err := get(t, db, store.Tokens, "SVC01\x1ftaro"); err != nil || v != "kept" {
					t.Errorf("existing data after reopening: %q, %v", v, err)
				}
			}
		})
	}
}

func TestOpenCreatesEveryBucket(t *testing.T) {
	db := open(t)
	for _, b := range store.Buckets {
		t.Run(string(b), func(t *testing.T) {
			if _, err := get(t, db, b, "missing"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get in a fresh bucket: %v, want ErrNotFound", err)
			}
			if keys, _ := entries(t, db, b); len(keys) != 0 {
				t.Errorf("fresh bucket holds %q", keys)
			}
		})
	}
	// A bucket the store does not know is a store failure, never "not found".
	if _, err := get(t, db, store.Bucket("nope"), "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get in an unknown bucket: %v, want ErrUnavailable", err)
	}
}

func TestGetPutDelete(t *testing.T) {
	db := open(t)
	put(t, db, store.Sessions, "a", "1")
	put(t, db, store.Pending, "a", "other bucket")

	steps := []struct {
		name    string
		op      func(tx store.Tx) error
		key     string
		want    string
		wantErr error
	}{
		{"read back", nil, "a", "1", nil},
		{"missing key", nil, "b", "", store.ErrNotFound},
		{"overwrite", func(tx store.Tx) error { return tx.Put(store.Sessions, "a", []byte("2")) }, "a", "2", nil},
		{"empty value", func(tx store.Tx) error { return tx.Put(store.Sessions, "e", []byte{}) }, "e", "", nil},
		{"delete", func(tx store.Tx) error { return tx.Delete(store.Sessions, "a") }, "a", "", store.ErrNotFound},
		{"delete missing is no error", func(tx store.Tx) error { return tx.Delete(store.Sessions, "never") }, "never", "", store.ErrNotFound},
	}
	for _, s := range steps {
		if s.op != nil {
			if err := db.Update(ctx, s.op); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		got, err := get(t, db, store.Sessions, s.key)
		if !errors.Is(err, s.wantErr) || got != s.want {
			t.Errorf("%s: Get(%q) = %q, %v; want %q, %v", s.name, s.key, got, err, s.want, s.wantErr)
		}
	}
	// Buckets are separate keyspaces.
	if got, err := get(t, db, store.Pending, "a"); err != nil || got != "other bucket" {
		t.Errorf("other bucket: %q, %v", got, err)
	}
}

func TestSecondOpenFailsFastWithClearMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otpgate.db")
	first, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	start := time.Now()
	second, err := Open(path, 100*time.Millisecond)
	took := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the file %s is locked by another process", err, path)
	}
	// bbolt polls the lock every 50ms and gives up within the timeout.
	if took > 10*time.Second {
		t.Errorf("second Open gave up after %v; want about the 100ms timeout", took)
	}

	// The first handle is unharmed, and the file opens once it is released.
	put(t, first, store.Services, "SVC01", "on")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open after the first handle closed: %v", err)
	}
	defer again.Close()
	if v, err := get(t, again, store.Services, "SVC01"); err != nil || v != "on" {
		t.Errorf("data after reopening: %q, %v", v, err)
	}
}

// clock is a settable clock for expiry.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// raw counts the entries of a bucket as bbolt holds them, expired or not.
func raw(t *testing.T, db *DB, name []byte) int {
	t.Helper()
	n := 0
	err := db.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func update(t *testing.T, db *DB, fn func(tx store.Tx) error) {
	t.Helper()
	if err := db.Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

// Sweep deletes what has expired, limit keys per transaction, and leaves no
// index entry behind; the rest stays.
func TestSweepInBoundedBatches(t *testing.T) {
	c := newClock()
	db := openWith(t, Options{Now: c.now})
	update(t, db, func(tx store.Tx) error {
		for i := range 25 {
			if err := store.PutTTL(tx, store.Sessions, fmt.Sprintf("short%02d", i), []byte("v"), time.Minute); err != nil {
				return err
			}
		}
		for i := range 5 {
			if err := store.PutTTL(tx, store.Sessions, fmt.Sprintf("long%02d", i), []byte("v"), time.Hour); err != nil {
				return err
			}
		}
		return tx.Put(store.Sessions, "permanent", []byte("v"))
	})
	c.advance(time.Minute)
	var got []int
	for range 5 {
		n, err := db.Sweep(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if want := []int{10, 10, 5, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("sweeps removed %v, want %v", got, want)
	}
	if n := raw(t, db, []byte(store.Sessions)); n != 6 {
		t.Errorf("%d keys left in the file, want the 5 long ones and the permanent one", n)
	}
	if a, b := raw(t, db, expiryByKey), raw(t, db, expiryByTime); a != 5 || b != 5 {
		t.Errorf("expiry entries %d by key, %d by time; want 5 each", a, b)
	}
}

// Every write keeps the expiry index exact: one entry per expiring key,
// none for a key rewritten without expiry or deleted.
func TestExpiryIndexFollowsWrites(t *testing.T) {
	c := newClock()
	db := openWith(t, Options{Now: c.now})
	steps := []struct {
		name  string
		write func(tx store.Tx) error
		want  int // entries in each index bucket
	}{
		{"PutTTL", func(tx store.Tx) error { return store.PutTTL(tx, store.Pending, "k", []byte("v"), time.Minute) }, 1},
		{"PutTTL again", func(tx store.Tx) error { return store.PutTTL(tx, store.Pending, "k", []byte("v"), time.Hour) }, 1},
		{"Put", func(tx store.Tx) error { return tx.Put(store.Pending, "k", []byte("v")) }, 0},
		{"PutTTL over a plain key", func(tx store.Tx) error { return store.PutTTL(tx, store.Pending, "k", []byte("v"), time.Minute) }, 1},
		{"same key in another bucket", func(tx store.Tx) error { return store.PutTTL(tx, store.Sessions, "k", []byte("v"), time.Minute) }, 2},
		{"Delete", func(tx store.Tx) error { return tx.Delete(store.Pending, "k") }, 1},
		{"Delete the other", func(tx store.Tx) error { return tx.Delete(store.Sessions, "k") }, 0},
	}
	for _, s := range steps {
		update(t, db, s.write)
		if a, b := raw(t, db, expiryByKey), raw(t, db, expiryByTime); a != s.want || b != s.want {
			t.Errorf("after %s: %d expiry entries by key, %d by time; want %d", s.name, a, b, s.want)
		}
	}
	// The second PutTTL's hour counts, not the first one's minute.
	update(t, db, func(tx store.Tx) error { return store.PutTTL(tx, store.Pending, "k", []byte("v"), time.Minute) })
	update(t, db, func(tx store.Tx) error { return store.PutTTL(tx, store.Pending, "k", []byte("v"), time.Hour) })
	c.advance(2 * time.Minute)
	if n, err := db.Sweep(ctx, 10); err != nil || n != 0 {
		t.Errorf("Sweep after the first expiry passed: %d, %v; want nothing removed", n, err)
	}
	if _, err := get(t, db, store.Pending, "k"); err != nil {
		t.Errorf("k after its first expiry passed: %v", err)
	}
}

// The etcd transaction limits refuse with ErrTooLarge when on, as Open
// has them, and leave bbolt's own bounds when off.
func TestTxnLimits(t *testing.T) {
	keys := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("k%03d", i))
		}
		return out
	}
	tests := []struct {
		name string
		fn   func(tx store.Tx) error
	}{
		{"writes past MaxTxnKeys", func(tx store.Tx) error {
			for _, k := range keys(store.MaxTxnKeys + 1) {
				if err := tx.Put(store.Pending, k, []byte("v")); err != nil {
					return err
				}
			}
			return nil
		}},
		{"deletes past MaxTxnKeys", func(tx store.Tx) error {
			for _, k := range keys(store.MaxTxnKeys + 1) {
				if err := tx.Delete(store.Pending, k); err != nil {
					return err
				}
			}
			return nil
		}},
		{"reads past MaxTxnKeys", func(tx store.Tx) error {
			for _, k := range keys(store.MaxTxnKeys + 1) {
				if _, err := tx.Get(store.Pending, k); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			return nil
		}},
		{"bytes past MaxTxnBytes", func(tx store.Tx) error {
			if err := tx.Put(store.Pending, "a", make([]byte, store.MaxValueSize)); err != nil {
				return err
			}
			return tx.Put(store.Pending, "b", make([]byte, store.MaxTxnBytes-store.MaxValueSize))
		}},
	}
	for _, limits := range []bool{false, true} {
		db := openWith(t, Options{TxnLimits: limits})
		for chunk := range slices.Chunk(keys(store.MaxTxnKeys+1), 100) {
			update(t, db, func(tx store.Tx) error {
				for _, k := range chunk {
					if err := tx.Put(store.Services, k, []byte("v")); err != nil {
						return err
					}
				}
				return nil
			})
		}
		for _, tc := range tests {
			err := db.Update(ctx, tc.fn)
			if limits && !errors.Is(err, store.ErrTooLarge) || !limits && err != nil {
				t.Errorf("limits %v, %s: %v", limits, tc.name, err)
			}
		}
		// Views are not bounded: an etcd View reads at one revision
		// without a transaction.
		if err := db.View(ctx, func(tx store.Tx) error {
			for _, k := range keys(store.MaxTxnKeys + 1) {
				if _, err := tx.Get(store.Services, k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Errorf("limits %v, View over every key: %v", limits, err)
		}
	}
	db, err := Open(filepath.Join(t.TempDir(), "open.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range tests {
		if err := db.Update(ctx, tc.fn); !errors.Is(err, store.ErrTooLarge) {
			t.Errorf("Open, %s: %v; want the limits kept", tc.name, err)
		}
	}
}

// A file written before expiry, chunks and time-ordered keys existed opens
// and reads as before, and the old sequence-keyed audit records sort before
// the new ones.
func TestOldFileReadsAsBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otpgate.db")
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"services", "tokens", "setup_links", "sessions", "pending", "audit"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte("tokens")).Put([]byte("SVC01\x1ftaro"), []byte(`{"state":"active"}`)); err != nil {
			return err
		}
		return tx.Bucket([]byte("audit")).Put([]byte(fmt.Sprintf("%020d", 7)), []byte("old record"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := get(t, db, store.Tokens, "SVC01\x1ftaro"); err != nil || v != `{"state":"active"}` {
		t.Errorf("old token record: %q, %v", v, err)
	}
	update(t, db, func(tx store.Tx) error {
		_, err := store.AppendAt(tx, store.Audit, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), []byte("new record"))
		return err
	})
	_, values := entries(t, db, store.Audit)
	if got := strings.Join(values, ", "); got != "old record, new record" {
		t.Errorf("audit order %s", got)
	}
}

// A Scan page is bounded by the keys it visits, expired ones included, and
// by the bytes it copies, so neither unswept keys nor large values make one
// page unbounded.
func TestScanPageBounds(t *testing.T) {
	c := newClock()
	db := openWith(t, Options{Now: c.now})
	for i := range 6 {
		update(t, db, func(tx store.Tx) error {
			return tx.Put(store.Pending, fmt.Sprintf("big%d", i), make([]byte, store.MaxValueSize))
		})
	}
	page, next, err := db.Scan(ctx, store.Pending, "", store.MaxScanLimit)
	if err != nil || len(page) != scanPageBytes/store.MaxValueSize || next == "" {
		t.Errorf("page of 1 MiB values: %d entries, next %q, %v; want %d and more to come", len(page), next, err, scanPageBytes/store.MaxValueSize)
	}

	update(t, db, func(tx store.Tx) error {
		for i := range 20 {
			if err := store.PutTTL(tx, store.Sessions, fmt.Sprintf("k%02d", i), []byte("v"), time.Minute); err != nil {
				return err
			}
		}
		return nil
	})
	c.advance(time.Minute)
	page, next, err = db.Scan(ctx, store.Sessions, "", 5)
	if err != nil || len(page) != 0 || next != "k04" {
		t.Errorf("page over expired keys: %d entries, next %q, %v; want none and next k04", len(page), next, err)
	}
}

// The store's own buckets are not the caller's.
func TestExpiryBucketsUnreachable(t *testing.T) {
	db := open(t)
	for _, b := range [][]byte{expiryByKey, expiryByTime} {
		if _, err := get(t, db, store.Bucket(b), "k"); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Get in %q: %v, want ErrUnavailable", b, err)
		}
		if err := db.Update(ctx, func(tx store.Tx) error { return tx.Put(store.Bucket(b), "k", []byte("v")) }); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Put in %q: %v, want ErrUnavailable", b, err)
		}
	}
}
