// Package boltstore implements store.Store on a bbolt file: one file, ACID,
// one writer, which is all a single gateway node needs.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/otpgate/otpgate/internal/store"
)

// bbolt cannot expire keys by itself, so the expiry of a key written with
// PutTTL is kept in two buckets of the store's own, beside the caller's: one
// to look it up by key (Get must not return an expired key even before a
// sweep), one ordered by time so that Sweep visits only what has expired.
// Their names start with a NUL byte, which no store.Bucket does. Values
// themselves are stored as given, so files written before expiry existed
// read as they did.
var (
	// expiryByKey maps bucket NUL key to the expiry, 8 bytes of big-endian
	// Unix nanoseconds.
	expiryByKey = []byte("\x00expiry")
	// expiryByTime holds the keys expiry, bucket, NUL, key with empty values.
	expiryByTime = []byte("\x00expiry-by-time")
)

// scanPageBytes bounds the keys and values one Scan page copies out, so a
// page of large values (held bodies) stays a few MiB.
const scanPageBytes = 4 << 20

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the file lock. Default: 5 seconds.
	Timeout time.Duration
	// Now is the clock expiries are set and judged by. Default: time.Now.
	Now func() time.Time
	// TxnLimits refuses, with store.ErrTooLarge, a value over
	// store.MaxValueSize and an Update that reads or writes more than
	// store.MaxTxnKeys keys or writes more than store.MaxTxnBytes, as an
	// etcd store must, so that code only bbolt could run is found on one
	// node. Open turns it on; without it only bbolt's own bounds apply.
	TxnLimits bool
}

// DB is a bbolt-backed store.
type DB struct {
	db        *bolt.DB
	now       func() time.Time
	txnLimits bool
}

// Open opens (creating if needed) the database file at path with mode 0600,
// keeping etcd's transaction limits (Options.TxnLimits). It waits at most
// timeout for the file lock, so a second process fails fast instead of
// hanging while the first one holds the file.
func Open(path string, timeout time.Duration) (*DB, error) {
	return OpenWith(path, Options{Timeout: timeout, TxnLimits: true})
}

// OpenWith is Open with every option.
func OpenWith(path string, o Options) (*DB, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating database folder: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.Timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
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
		for _, b := range [][]byte{expiryByKey, expiryByTime} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
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
	return &DB{db: db, now: o.Now, txnLimits: o.TxnLimits}, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.db.Path() }

// Update runs fn in a write transaction. Concurrent callers are grouped into
// one commit (bbolt's Batch), which is why fn may run more than once: when
// one fn of a group fails, bbolt rolls the group back, runs the others again
// together and the failed one alone.
func (d *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	return d.run(ctx, true, fn)
}

// View runs fn in a read-only transaction.
func (d *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	return d.run(ctx, false, fn)
}

// fnError carries an error that came out of fn (or a write fn made) through
// bbolt, so that it is told apart from bbolt's own by identity rather than
// by comparing errors: a caller's error may be of a type == cannot compare.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// run runs fn in a transaction and classifies the outcome: fn's own error
// (or the first failed write's) comes back as it is; anything else bbolt
// reports (closed database, I/O, a failed commit) is the store failing and
// is marked ErrUnavailable, so the gateway answers 503 and fails closed.
func (d *DB) run(ctx context.Context, writable bool, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body := func(btx *bolt.Tx) error {
		t := &tx{t: btx, now: d.now()}
		if writable && d.txnLimits {
			t.limits = &txnUse{reads: map[string]bool{}, writes: map[string]bool{}}
		}
		err := fn(t)
		if err == nil {
			err = t.failed
		}
		if err != nil {
			return &fnError{err}
		}
		return nil
	}
	var err error
	if writable {
		err = d.db.Batch(body)
	} else {
		err = d.db.View(body)
	}
	var fe *fnError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fe.err
	default:
		return unavailable(err)
	}
}

func unavailable(err error) error { return fmt.Errorf("%w: %v", store.ErrUnavailable, err) }

// Scan reads one page of b in a read-only transaction and copies it out.
// A page visits at most limit keys, expired ones included, and stops early
// once it holds scanPageBytes, so neither a bucket full of unswept keys nor
// one of large values makes a page unbounded.
func (d *DB) Scan(ctx context.Context, b store.Bucket, after string, limit int) ([]store.KV, string, error) {
	if limit < 1 || limit > store.MaxScanLimit {
		return nil, "", fmt.Errorf("store: scan limit %d, want 1…%d", limit, store.MaxScanLimit)
	}
	var page []store.KV
	var next string
	err := d.View(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		page, next = nil, ""
		bk, err := t.bucket(b)
		if err != nil {
			return err
		}
		c := bk.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		var last []byte
		size := 0
		for visited := 0; k != nil && visited < limit && size < scanPageBytes; visited++ {
			exp, ok := t.expiry(b, k)
			if !ok || t.now.Before(exp) {
				page = append(page, store.KV{Key: string(k), Value: bytes.Clone(v), Expires: exp})
				size += len(k) + len(v)
			}
			last = k
			k, v = c.Next()
		}
		if k != nil {
			next = string(last)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

// Sweep deletes up to limit (1…store.MaxScanLimit) expired keys, oldest
// expiry first, in one write transaction.
func (d *DB) Sweep(ctx context.Context, limit int) (int, error) {
	if limit < 1 || limit > store.MaxScanLimit {
		return 0, fmt.Errorf("store: sweep limit %d, want 1…%d", limit, store.MaxScanLimit)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	err := d.db.Update(func(btx *bolt.Tx) error {
		n = 0
		byTime, byKey := btx.Bucket(expiryByTime), btx.Bucket(expiryByKey)
		if byTime == nil || byKey == nil {
			return errors.New("expiry buckets missing")
		}
		now := d.now().UnixNano()
		// Collect first: deleting under a cursor can skip keys.
		var due [][]byte
		c := byTime.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			bucketKey := k[8:]
			b, key, ok := bytes.Cut(bucketKey, []byte{0})
			if !ok {
				return fmt.Errorf("damaged expiry entry %q", k)
			}
			if bk := btx.Bucket(b); bk != nil {
				if err := bk.Delete(key); err != nil {
					return err
				}
			}
			if err := byKey.Delete(bucketKey); err != nil {
				return err
			}
			if err := byTime.Delete(k); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

// tx is one run of fn. now is fixed for the run, so that a key does not
// expire between two reads of the same fn.
type tx struct {
	t   *bolt.Tx
	now time.Time
	// failed is the first write that failed; it fails the transaction even
	// if fn goes on and returns nil.
	failed error
	// limits counts what an Update touches when Options.TxnLimits is on.
	limits *txnUse
}

type txnUse struct {
	reads, writes map[string]bool
	bytes         int
}

func (t *tx) fail(err error) error {
	if t.failed == nil {
		t.failed = err
	}
	return err
}

func (t *tx) bucket(b store.Bucket) (*bolt.Bucket, error) {
	bk := t.t.Bucket([]byte(b))
	if bk == nil || len(b) == 0 || b[0] == 0 {
		return nil, fmt.Errorf("%w: bucket %q missing", store.ErrUnavailable, b)
	}
	return bk, nil
}

// read counts a key read against the transaction limits.
func (t *tx) read(b store.Bucket, key string) error {
	if t.limits == nil {
		return nil
	}
	t.limits.reads[string(b)+"\x00"+key] = true
	if len(t.limits.reads) > store.MaxTxnKeys {
		return t.fail(fmt.Errorf("%w: transaction reads more than %d keys", store.ErrTooLarge, store.MaxTxnKeys))
	}
	return nil
}

// write checks one write before it is made.
func (t *tx) write(b store.Bucket, key string, n int) error {
	switch {
	case !t.t.Writable():
		return t.fail(fmt.Errorf("%w: %s/%s", store.ErrReadOnly, b, key))
	case key == "":
		return t.fail(fmt.Errorf("store: empty key in %s", b))
	case len(key) > store.MaxKeySize:
		return t.fail(fmt.Errorf("%w: %d-byte key in %s, at most %d", store.ErrTooLarge, len(key), b, store.MaxKeySize))
	case t.limits == nil:
		// Until held bodies move to chunks, bbolt takes values of any size
		// without the limits, as before the contract declared them.
		return nil
	case n > store.MaxValueSize:
		return t.fail(fmt.Errorf("%w: %d-byte value for %s/%s, at most %d", store.ErrTooLarge, n, b, key, store.MaxValueSize))
	}
	t.limits.writes[string(b)+"\x00"+key] = true
	t.limits.bytes += len(key) + n
	switch {
	case len(t.limits.writes) > store.MaxTxnKeys:
		return t.fail(fmt.Errorf("%w: transaction writes more than %d keys", store.ErrTooLarge, store.MaxTxnKeys))
	case t.limits.bytes > store.MaxTxnBytes:
		return t.fail(fmt.Errorf("%w: transaction writes more than %d bytes", store.ErrTooLarge, store.MaxTxnBytes))
	}
	return nil
}

// expiry returns key's expiry, if it has one.
func (t *tx) expiry(b store.Bucket, key []byte) (time.Time, bool) {
	v := t.t.Bucket(expiryByKey).Get(expiryKey(b, key))
	if len(v) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
}

func expiryKey(b store.Bucket, key []byte) []byte {
	return append(append([]byte(b), 0), key...)
}

// setExpiry replaces key's expiry by exp, or drops it if exp is zero.
func (t *tx) setExpiry(b store.Bucket, key []byte, exp time.Time) error {
	byKey, byTime := t.t.Bucket(expiryByKey), t.t.Bucket(expiryByTime)
	bk := expiryKey(b, key)
	if old := byKey.Get(bk); old != nil {
		if err := byTime.Delete(append(bytes.Clone(old), bk...)); err != nil {
			return err
		}
		if err := byKey.Delete(bk); err != nil {
			return err
		}
	}
	if exp.IsZero() {
		return nil
	}
	ns := binary.BigEndian.AppendUint64(nil, uint64(exp.UnixNano()))
	if err := byKey.Put(bk, ns); err != nil {
		return err
	}
	return byTime.Put(append(ns, bk...), nil)
}

func (t *tx) Get(b store.Bucket, key string) ([]byte, error) {
	bk, err := t.bucket(b)
	if err != nil {
		return nil, err
	}
	if err := t.read(b, key); err != nil {
		return nil, err
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return nil, store.ErrNotFound
	}
	if exp, ok := t.expiry(b, []byte(key)); ok && !t.now.Before(exp) {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (t *tx) Put(b store.Bucket, key string, value []byte) error {
	return t.put(b, key, value, time.Time{})
}

func (t *tx) PutTTL(b store.Bucket, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return t.fail(fmt.Errorf("store: time to live %v for %s/%s, want more than zero", ttl, b, key))
	}
	return t.put(b, key, value, t.now.Add(ttl))
}

func (t *tx) put(b store.Bucket, key string, value []byte, exp time.Time) error {
	bk, err := t.bucket(b)
	if err != nil {
		return t.fail(err)
	}
	if err := t.write(b, key, len(value)); err != nil {
		return err
	}
	if err := bk.Put([]byte(key), value); err != nil {
		return t.fail(unavailable(err))
	}
	if err := t.setExpiry(b, []byte(key), exp); err != nil {
		return t.fail(unavailable(err))
	}
	return nil
}

func (t *tx) Delete(b store.Bucket, key string) error {
	bk, err := t.bucket(b)
	if err != nil {
		return t.fail(err)
	}
	if key == "" { // never stored, so already absent
		return nil
	}
	if err := t.write(b, key, 0); err != nil {
		return err
	}
	if err := bk.Delete([]byte(key)); err != nil {
		return t.fail(unavailable(err))
	}
	if err := t.setExpiry(b, []byte(key), time.Time{}); err != nil {
		return t.fail(unavailable(err))
	}
	return nil
}

// Interface guards
var (
	_ store.Store      = (*DB)(nil)
	_ store.ExpiringTx = (*tx)(nil)
)
