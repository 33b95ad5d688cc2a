// Package store defines the storage the gateway's state lives in: a small
// transactional key-value interface that bbolt implements on one node and a
// distributed store (etcd) can implement for many.
//
// Every state change of the flow (confirm, enrol, renew, revoke, lock) is one
// Update: a read-check-write that either happens whole or not at all. That is
// the property replay protection needs, so the interface asks for nothing
// weaker: bbolt gives it with a write transaction, etcd with a serializable
// STM transaction.
package store

import (
	"context"
	"errors"
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
	// Audit is the append-only audit trail.
	Audit Bucket = "audit"
	// Outbox holds notices to mail, written with the change they announce (package outbox).
	Outbox Bucket = "outbox"
)

// Buckets lists every bucket, so an implementation can create them up front.
var Buckets = []Bucket{Services, Tokens, SetupLinks, Sessions, Pending, Audit, Outbox}

// ErrNotFound is returned by Tx.Get when the key does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable wraps failures of the store itself (I/O, closed database,
// lost quorum). Callers answer 503 and fail closed on protected operations.
var ErrUnavailable = errors.New("store unavailable")

// Store is a transactional key-value store.
type Store interface {
	// Update runs fn as one atomic read-check-write transaction. If fn returns
	// an error nothing it wrote is kept. fn may run more than once (grouped
	// commits, optimistic retries), so it must have no effects outside tx and
	// must set every result it hands back to its caller afresh on each run.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Close releases the store.
	Close() error
}

// Tx is a transaction's view of the buckets.
type Tx interface {
	// Get returns the value at key, or ErrNotFound. The slice is valid only
	// within the transaction.
	Get(b Bucket, key string) ([]byte, error)
	Put(b Bucket, key string, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(b Bucket, key string) error
	// ForEach calls fn for each key in order. Values are valid only within fn.
	// Writes from fn are not allowed.
	ForEach(b Bucket, fn func(key string, value []byte) error) error
	// Append adds value under a new key that sorts after all earlier keys of b.
	Append(b Bucket, value []byte) error
}
