// Package boltstore implements store.Store on a bbolt file: one file, ACID,
// one writer, which is all a single gateway node needs.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otpgate/otpgate/internal/store"
)

// DB is a bbolt-backed store.
type DB struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database file at path with mode 0600.
// It waits at most timeout for the file lock, so a second process fails fast
// instead of hanging while the first one holds the file.
func Open(path string, timeout time.Duration) (*DB, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating database folder: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: the file is locked by another process (is another otpgate or caddy running with this database?)", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// bbolt creates the file with the mode given only when it is new; an
	// existing file keeps whatever mode it had, and it holds sealed secrets
	// and PIN hashes.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("restricting %s to 0600: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range store.Buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("creating buckets in %s: %w", path, err)
	}
	// A code check waits for companions to share its commit at most this
	// long; bbolt's 10ms default would add that to every confirmation of a
	// quiet gateway, for no gain.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &DB{db: db}, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.db.Path() }

// Update runs fn in a write transaction. Concurrent callers are grouped into
// one commit (bbolt's Batch), which is why fn may run more than once.
func (d *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := d.db.Batch(func(btx *bolt.Tx) error {
		fnErr = fn(tx{btx})
		return fnErr
	})
	return d.classify(err, fnErr)
}

// View runs fn in a read-only transaction.
func (d *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := d.db.View(func(btx *bolt.Tx) error {
		fnErr = fn(tx{btx})
		return fnErr
	})
	return d.classify(err, fnErr)
}

// classify tells the caller's own errors from the store's: the first are
// returned as they are, the second marked unavailable so the gateway answers
// 503 and fails closed.
func (d *DB) classify(err, fnErr error) error {
	if err == nil {
		return nil
	}
	if fnErr != nil && errors.Is(err, fnErr) {
		return err
	}
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

type tx struct{ t *bolt.Tx }

func (t tx) bucket(b store.Bucket) (*bolt.Bucket, error) {
	bk := t.t.Bucket([]byte(b))
	if bk == nil {
		return nil, fmt.Errorf("%w: bucket %q missing", store.ErrUnavailable, b)
	}
	return bk, nil
}

func (t tx) Get(b store.Bucket, key string) ([]byte, error) {
	bk, err := t.bucket(b)
	if err != nil {
		return nil, err
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (t tx) Put(b store.Bucket, key string, value []byte) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), value)
}

func (t tx) Delete(b store.Bucket, key string) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	return bk.Delete([]byte(key))
}

func (t tx) ForEach(b store.Bucket, fn func(string, []byte) error) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	return bk.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

func (t tx) Append(b store.Bucket, value []byte) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	seq, err := bk.NextSequence()
	if err != nil {
		return err
	}
	// Zero-padded so that byte order, which bbolt iterates in, is numeric order.
	return bk.Put([]byte(fmt.Sprintf("%020s", strconv.FormatUint(seq, 10))), value)
}

// Interface guards
var _ store.Store = (*DB)(nil)
