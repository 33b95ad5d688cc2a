package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

var ctx = context.Background()

// open opens a fresh database in a temporary folder and closes it when the
// test ends.
func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "otpgate.db"), time.Second)
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

// entries lists a bucket's keys and values in ForEach order.
func entries(t *testing.T, db *DB, b store.Bucket) (keys, values []string) {
	t.Helper()
	err := db.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(b, func(k string, v []byte) error {
			keys, values = append(keys, k), append(values, string(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, values
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

func TestGetSeesOwnWritesInUpdate(t *testing.T) {
	db := open(t)
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(store.Tokens, "k", []byte("v")); err != nil {
			return err
		}
		v, err := tx.Get(store.Tokens, "k")
		if err != nil || string(v) != "v" {
			return fmt.Errorf("Get after Put in the same transaction: %q, %v", v, err)
		}
		if err := tx.Delete(store.Tokens, "k"); err != nil {
			return err
		}
		if _, err := tx.Get(store.Tokens, "k"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Get after Delete in the same transaction: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestForEachInKeyOrder(t *testing.T) {
	db := open(t)
	for _, k := range []string{"m", "a", "z", "b", "aa"} {
		put(t, db, store.Services, k, "v"+k)
	}
	keys, values := entries(t, db, store.Services)
	if got, want := strings.Join(keys, ","), "a,aa,b,m,z"; got != want {
		t.Errorf("keys %s, want %s", got, want)
	}
	if got, want := strings.Join(values, ","), "va,vaa,vb,vm,vz"; got != want {
		t.Errorf("values %s, want %s", got, want)
	}

	// fn's error stops the walk and comes back as it is.
	errStop := errors.New("stop")
	n := 0
	err := db.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(store.Services, func(string, []byte) error {
			n++
			if n == 2 {
				return errStop
			}
			return nil
		})
	})
	if err != errStop || n != 2 {
		t.Errorf("ForEach stopped after %d calls with %v; want 2 calls and errStop", n, err)
	}
}

func TestAppendKeysSortNumerically(t *testing.T) {
	db := open(t)
	const n = 150 // sequences 1…150: past 9→10 and 99→100
	// Transactions of several appends and of one, the single ones landing
	// on sequences 1, 10 and 100.
	i := 0
	for _, size := range []int{1, 8, 1, 40, 49, 1, 50} {
		err := db.Update(ctx, func(tx store.Tx) error {
			for j := range size {
				if err := tx.Append(store.Audit, []byte(strconv.Itoa(i+j))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		i += size
	}
	// Another bucket's appends neither disturb nor share the sequence.
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.Append(store.Pending, []byte("x")) }); err != nil {
		t.Fatal(err)
	}

	keys, values := entries(t, db, store.Audit)
	if len(values) != n {
		t.Fatalf("%d records, want %d", len(values), n)
	}
	for i, v := range values {
		if v != strconv.Itoa(i) {
			t.Fatalf("record %d is %q: appends out of order (keys %q…)", i, v, keys[:min(len(keys), 12)])
		}
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] || len(keys[i]) != len(keys[0]) {
			t.Fatalf("keys %q and %q do not sort in append order", keys[i-1], keys[i])
		}
	}
	for _, i := range []int{8, 9, 98, 99} { // the keys either side of 10 and 100
		if a, b := keys[i], keys[i+1]; a >= b {
			t.Errorf("key %q sorts after %q", a, b)
		}
	}
}

func TestUpdateRollsBackWhenFnFails(t *testing.T) {
	db := open(t)
	put(t, db, store.Tokens, "kept", "before")
	errBoom := errors.New("boom")
	wrapped := fmt.Errorf("checking: %w", store.ErrNotFound)

	for _, fnErr := range []error{errBoom, wrapped} {
		t.Run(fnErr.Error(), func(t *testing.T) {
			err := db.Update(ctx, func(tx store.Tx) error {
				if err := tx.Put(store.Tokens, "new", []byte("x")); err != nil {
					return err
				}
				if err := tx.Put(store.Tokens, "kept", []byte("changed")); err != nil {
					return err
				}
				if err := tx.Delete(store.Tokens, "kept"); err != nil {
					return err
				}
				if err := tx.Append(store.Audit, []byte("record")); err != nil {
					return err
				}
				return fnErr
			})
			if err != fnErr {
				t.Errorf("Update returned %v, want fn's own error %v as it is", err, fnErr)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Error("fn's error was reported as the store being unavailable")
			}
			if _, err := get(t, db, store.Tokens, "new"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a Put of the failed transaction was kept: %v", err)
			}
			if v, err := get(t, db, store.Tokens, "kept"); err != nil || v != "before" {
				t.Errorf("a change of the failed transaction was kept: %q, %v", v, err)
			}
			if keys, _ := entries(t, db, store.Audit); len(keys) != 0 {
				t.Errorf("an Append of the failed transaction was kept: %q", keys)
			}
		})
	}

	// View hands fn's error back the same way.
	if err := db.View(ctx, func(store.Tx) error { return errBoom }); err != errBoom {
		t.Errorf("View returned %v, want %v", err, errBoom)
	}
}

func TestCancelledContextRunsNothing(t *testing.T) {
	db := open(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	fn := func(store.Tx) error { ran = true; return nil }
	if err := db.Update(cctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v", err)
	}
	if err := db.View(cctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("View: %v", err)
	}
	if ran {
		t.Error("fn ran under a cancelled context")
	}
}

func TestUnavailableAfterClose(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "otpgate.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ran := false
	fn := func(tx store.Tx) error { ran = true; return tx.Put(store.Tokens, "k", []byte("v")) }
	if err := db.Update(ctx, fn); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update after Close: %v, want ErrUnavailable", err)
	}
	if err := db.View(ctx, func(tx store.Tx) error { ran = true; return nil }); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("View after Close: %v, want ErrUnavailable", err)
	}
	if ran {
		t.Error("fn ran on a closed database")
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
	if took > 2*time.Second {
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

// incr is a read-modify-write of a decimal counter.
func incr(tx store.Tx, key string) error {
	n := 0
	v, err := tx.Get(store.Pending, key)
	switch {
	case err == nil:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return err
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return tx.Put(store.Pending, key, []byte(strconv.Itoa(n+1)))
}

func TestConcurrentUpdatesEachAppliedOnce(t *testing.T) {
	db := open(t)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- db.Update(ctx, func(tx store.Tx) error {
				if err := incr(tx, "counter"); err != nil {
					return err
				}
				return tx.Append(store.Audit, []byte("+1"))
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if v, err := get(t, db, store.Pending, "counter"); err != nil || v != strconv.Itoa(n) {
		t.Errorf("counter = %q, %v; want %d", v, err, n)
	}
	if keys, _ := entries(t, db, store.Audit); len(keys) != n {
		t.Errorf("%d audit appends, want %d", len(keys), n)
	}
}

// In a grouped commit a failing fn must neither take its companions' writes
// down with it nor get its own kept, and it gets its own error back.
func TestConcurrentUpdatesWithFailuresInTheBatch(t *testing.T) {
	db := open(t)
	const n = 50
	errOdd := errors.New("odd caller refuses")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = db.Update(ctx, func(tx store.Tx) error {
				if err := incr(tx, "counter"); err != nil {
					return err
				}
				if i%2 == 1 {
					return errOdd
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if want := map[bool]error{true: errOdd, false: nil}[i%2 == 1]; err != want {
			t.Errorf("caller %d: %v, want %v", i, err, want)
		}
	}
	if v, err := get(t, db, store.Pending, "counter"); err != nil || v != strconv.Itoa(n/2) {
		t.Errorf("counter = %q, %v; want %d", v, err, n/2)
	}
}
