// Package store defines the storage the gateway's state lives in: a small
// transactional key-value interface that bbolt implements on one node and a
// distributed store (etcd) can implement for many.
//
// Every state change of the flow (confirm, enrol, renew, revoke, lock) is one
// Update: a read-check-write that either happens whole or not at all. That is
// the property replay protection needs, so the interface asks for nothing
// weaker: bbolt gives it with a write transaction, etcd (package etcdstore)
// with a transaction that compares the mod revision of every key read, as
// concurrency.STM does, and runs fn again on conflict.
//
// The contract is shaped by what etcd can keep, and every implementation
// passes the conformance suite in package storetest:
//
//   - Update may run fn more than once (bbolt groups commits and re-runs the
//     companions of a failed fn; STM retries on conflict).
//   - A transaction touches a bounded number of keys and bytes (etcd's
//     --max-txn-ops, 128 by default, and its 1.5 MiB request limit): see
//     MaxTxnKeys, MaxTxnBytes and MaxValueSize. Values larger than
//     MaxValueSize are written with StageChunked across several Updates
//     (one of at most MaxValueSize, with PutChunked within one).
//   - There are no range reads inside Update (STM has none, and a hand-made
//     etcd transaction cannot see phantoms). Store.Scan reads one bounded,
//     ordered page outside any transaction; bulk changes (sweeps, re-seal)
//     scan, then change each page in an Update of its own that reads each
//     entry again (it may have changed since the page was read).
//   - Writes can expire (PutTTL): etcd uses leases, bbolt records the expiry
//     and Store.Sweep removes what has expired. Reads treat an expired key as
//     absent from the moment it expires, sweep or not.
//   - Audit-like keys are unique and time-ordered without a counter key
//     (AppendAt): a key every transaction writes would make every pair of
//     transactions conflict on etcd and serialise the whole cluster.
//   - ErrUnavailable marks the store's own failures, so the gateway answers
//     503 and fails closed; a caller's own error comes back unchanged.
package store

import (
	"context"
	"errors"
	"time"
)

// Bucket names one keyspace.
type Bucket string

// The buckets the gateway uses. Keys are chosen by the packages that own the
// records; values are opaque bytes to the store.
const (
	// Services holds per-service settings (e.g. OTP required) keyed by service ID.
	Services Bucket = "services"
	// Tokens holds one token record per user, keyed by service and user ID.
	Tokens Bucket = "tokens"
	// SetupLinks maps the hash of a mailed setup link to its user.
	SetupLinks Bucket = "setup_links"
	// Sessions maps the hash of a bank session cookie to an identity.
	Sessions Bucket = "sessions"
	// Pending holds paused operations keyed by challenge ID.
	Pending Bucket = "pending"
	// Audit is the append-only audit trail, keyed by AppendAt.
	Audit Bucket = "audit"
	// Chunks holds the pieces of values written with StageChunked or
	// PutChunked; only the chunk helpers of this package read or write it.
	Chunks Bucket = "chunks"
	// Outbox holds notices to mail, written with the change they announce (package outbox).
	Outbox Bucket = "outbox"
	// Registered holds the mail addresses the bank registered per customer and company (package token).
	Registered Bucket = "registered"
)

// Buckets lists every bucket, so an implementation can create them up front.
var Buckets = []Bucket{Services, Tokens, SetupLinks, Sessions, Pending, Audit, Chunks, Outbox, Registered}

// Limits every implementation enforces or, where its own backend is more
// generous, callers keep anyway so that the same code runs on every store.
const (
	// MaxValueSize is the largest value Put and PutTTL accept: 1 MiB, so that
	// one value and the small records written beside it stay under etcd's
	// default 1.5 MiB request limit. Larger values go through StageChunked.
	MaxValueSize = 1 << 20
	// MaxKeySize is the longest key, in bytes.
	MaxKeySize = 1024
	// MaxTxnKeys bounds the distinct keys one Update reads, and separately
	// the distinct keys it writes (etcd's default --max-txn-ops is 128, and
	// an STM commit carries one comparison per key read and one operation
	// per key written).
	MaxTxnKeys = 128
	// MaxTxnBytes bounds the bytes (keys and values) one Update writes:
	// etcd's 1.5 MiB request limit less room for the comparisons and the
	// request's framing.
	MaxTxnBytes = MaxValueSize + 256<<10
	// MaxScanLimit is the largest page Scan returns.
	MaxScanLimit = 1000
)

// ErrNotFound is returned by Tx.Get when the key does not exist or has
// expired.
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable wraps failures of the store itself (I/O, closed database,
// lost quorum, a bucket missing from the file). Callers answer 503 and fail
// closed on protected operations. A caller's own error is never wrapped in
// it.
var ErrUnavailable = errors.New("store unavailable")

// ErrTooLarge is returned for a value over MaxValueSize, a key over
// MaxKeySize, a transaction over MaxTxnKeys or MaxTxnBytes where the store
// enforces them, and a chunked value over MaxChunkedSize. It is the caller's
// doing, not the store failing.
var ErrTooLarge = errors.New("store: too large")

// ErrReadOnly is returned by a write inside View.
var ErrReadOnly = errors.New("store: write in a read-only transaction")

// ErrCorrupt is returned by GetChunked when a chunked value's header or
// chunks do not match (half written, damaged, or partly expired): the value
// is never returned in pieces.
var ErrCorrupt = errors.New("store: chunked value is corrupt")

// Store is a transactional key-value store.
type Store interface {
	// Update runs fn as one atomic read-check-write transaction. If fn returns
	// an error nothing it wrote is kept and Update returns that very error,
	// unwrapped. If a write inside fn failed (ErrTooLarge, ErrUnavailable, …)
	// the whole Update fails with that error even when fn ignored it.
	//
	// fn may run more than once (grouped commits, optimistic retries), so it
	// must have no effects outside tx and must set every result it hands
	// back to its caller afresh on each run; only the last run's results
	// belong to what was committed. Two Updates that read and write the same
	// key never both commit on the value they read (claims, counters).
	//
	// fn stays within MaxTxnKeys and MaxTxnBytes. If ctx is already done,
	// fn does not run and ctx's error is returned.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only snapshot; writes fail with ErrReadOnly.
	// Errors as for Update. A View is not bound by MaxTxnKeys (etcd reads
	// at one revision without a transaction) but is for point reads:
	// reading a whole bucket is Scan's job.
	View(ctx context.Context, fn func(Tx) error) error
	// Scan returns up to limit (1…MaxScanLimit) entries of b whose keys sort
	// after after ("" starts at the beginning), in byte order of the keys,
	// copied out of the store, with expired entries left out. next is the
	// after of the following page, or "" when there is none. A page may
	// hold fewer than limit entries, even none, while next is not "" (the
	// store bounds the keys and bytes one page visits): only next == ""
	// ends a scan.
	//
	// Each page is a consistent snapshot; pages are not one snapshot
	// together. A key present for the whole scan is returned exactly once;
	// a key written or deleted during the scan may or may not be; no key is
	// returned twice, since each page starts after the last.
	Scan(ctx context.Context, b Bucket, after string, limit int) (page []KV, next string, err error)
	// Sweep removes up to limit keys whose time to live has passed, in one
	// Update, and returns how many it removed; a caller sweeps again while
	// that equals limit. A store that expires keys by itself (etcd leases)
	// may remove none. Sweeping is an optimisation of space: reads ignore
	// expired keys either way.
	Sweep(ctx context.Context, limit int) (removed int, err error)
	// Close releases the store; afterwards every call fails with
	// ErrUnavailable. Closing again is harmless.
	Close() error
}

// KV is one entry of a Scan page.
type KV struct {
	Key   string
	Value []byte
	// Expires is when the entry expires; zero if it does not. A bulk
	// rewrite (re-seal) passes the time left to PutTTL to keep it.
	Expires time.Time
}

// Tx is a transaction's view of the buckets.
//
// Every Tx a Store hands to fn also implements ExpiringTx; call it through
// PutTTL. (It joins Tx once the last Tx outside a store, token's test
// double, implements it.)
type Tx interface {
	// Get returns the value at key, or ErrNotFound if there is none or it
	// has expired. It sees the transaction's own writes. The slice is valid
	// only within the transaction and must not be modified.
	Get(b Bucket, key string) ([]byte, error)
	// Put sets key to value, with no expiry (an expiry the key had is
	// dropped). Keys are 1…MaxKeySize bytes and values at most MaxValueSize
	// (ErrTooLarge otherwise).
	Put(b Bucket, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(b Bucket, key string) error
}

// ExpiringTx is the part of a store's Tx that writes keys that expire.
type ExpiringTx interface {
	// PutTTL is Put with an expiry: from ttl (> 0) after the transaction
	// began, by the store's clock, Get and Scan treat the key as
	// absent, and Sweep (or an etcd lease) removes it. A later Put or PutTTL
	// of the key replaces the expiry; Delete removes both.
	//
	// An etcd store keeps the expiry beside the value as bbolt does, and
	// the lease only collects the garbage: etcd revokes a lease late and
	// rounds its TTL up, so the lease alone would let Get return an expired
	// key. Callers that need an exact lifetime still keep their own expiry
	// time in the value and check it with their own clock (nodes' clocks
	// differ).
	PutTTL(b Bucket, key string, value []byte, ttl time.Duration) error
}

// PutTTL writes key with an expiry through tx's ExpiringTx.
func PutTTL(tx Tx, b Bucket, key string, value []byte, ttl time.Duration) error {
	e, ok := tx.(ExpiringTx)
	if !ok {
		return errors.New("store: this transaction cannot write keys that expire")
	}
	return e.PutTTL(b, key, value, ttl)
}
