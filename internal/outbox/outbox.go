// Package outbox delivers the notices the gateway mails to customers
// (locked, activated, renewed, revoked, reset, unlocked, renewal due) apart
// from the request that caused them.
//
// A notice is written into the store by Enqueue in the same transaction as
// the change it announces, so it exists exactly when the change does: a
// customer who hangs up on their fifth wrong code has still locked the token,
// and the lock mail is still queued. A Sender drains the queue in the
// background with retries and exponential back-off, which also takes the
// relay's latency off the response path.
//
// Delivery is at least once. A sender claims a notice (a lease written in an
// Update) before delivering it and deletes it after, so two senders on one
// store do not send the same notice while the claim holds; but a crash, a
// store failure or a delivery outlasting the lease between sending and
// deleting leaves a notice that is sent again. A second copy of a security
// notice is harmless; a lost one is what this package exists to prevent.
//
// What is not queued: the setup mail and the notice that tells a previously
// registered address of a new issue. Both are conditions of the issue itself
// (token.Issue sends them before writing anything, and an issue that cannot
// announce itself is not made), so the customer must learn at once that they
// failed; and the setup link is a credential the store keeps only as a hash,
// which a queued copy would put back into the database. Notice therefore has
// no field for a link.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Notice is one mail to one customer, as much as composing it needs and no
// secret: the mail's text is made at delivery.
type Notice struct {
	// Event is the mail event (package mail's names: locked, activated, …).
	Event string `json:"event"`
	// Service and User identify the customer the notice is about.
	Service string `json:"service"`
	User    string `json:"user"`
	// To is the one address the notice goes to; a notice to two addresses
	// is two notices, so one failing address does not hold the other back.
	To string `json:"to"`
	// Expires is the token's expiry, for the events that state it.
	Expires time.Time `json:"expires,omitzero"`
	// At is when the change happened. The queue is ordered by it.
	At time.Time `json:"at"`
}

func (n Notice) check() error {
	switch {
	case n.Event == "":
		return errors.New("outbox: notice without an event")
	case strings.TrimSpace(n.To) == "":
		return errors.New("outbox: notice without an address")
	case n.At.UnixNano() <= 0:
		// The key is At's nanoseconds; the zero time would sort first forever.
		return errors.New("outbox: notice without a time")
	}
	return nil
}

// Entry is a stored notice with its delivery state, as OnFailure and Dead
// report it.
type Entry struct {
	// ID names the notice for Requeue; it is stable while the notice moves
	// between the queue and the dead letters.
	ID       string
	Notice   Notice
	Attempts int // deliveries tried so far
	// NextAt is when a queued notice is due again (zero: at once).
	NextAt time.Time
	// LastError is why the last delivery failed.
	LastError string
	// DeadAt is when the notice was given up on; zero while it is queued.
	DeadAt time.Time
}

// record is an Entry as stored, with the claim that keeps other senders off it.
type record struct {
	Notice     Notice    `json:"notice"`
	Attempts   int       `json:"attempts,omitempty"`
	NextAt     time.Time `json:"next_at,omitzero"`
	Claim      string    `json:"claim,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	DeadAt     time.Time `json:"dead_at,omitzero"`
}

// due: neither waiting for a retry nor claimed by a live sender.
func (r *record) due(now time.Time) bool {
	return !now.Before(r.NextAt) && !now.Before(r.LeaseUntil)
}

func (r *record) entry(id string) Entry {
	return Entry{ID: id, Notice: r.Notice, Attempts: r.Attempts, NextAt: r.NextAt, LastError: r.LastError, DeadAt: r.DeadAt}
}

// Keys are a state prefix and the ID, which is At's big-endian nanoseconds
// and a random suffix in hex: time-ordered and unique without a counter key
// that every transaction would write. (store.AppendAt makes keys of the same
// kind but writes them bare; a notice keeps its ID when it moves between the
// queue and the dead letters, so the prefix is part of the key.) Queued
// notices sort before dead ones, so a scan of either reads only its own.
const (
	queuedPrefix = "q"
	deadPrefix   = "x"
	idLen        = 32
)

func newID(at time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixNano()))
	// crypto/rand.Read never fails (it aborts the program instead).
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Enqueue queues n within tx: it is sent once tx commits, and never if tx
// does not. Call Sender.Kick after the commit to send it at once.
//
// The caller decides whether there is anyone to tell: a notice without an
// address is refused, and the refusal fails tx, so skip the call rather than
// let a change (a lock) depend on it.
func Enqueue(tx store.Tx, n Notice) error {
	if err := n.check(); err != nil {
		return err
	}
	return save(tx, queuedPrefix+newID(n.At), &record{Notice: n})
}

// errDamaged: a stored record does not decode.
var errDamaged = errors.New("outbox: damaged record")

// load reads the record at key, nil if there is none.
func load(tx store.Tx, key string) (*record, error) {
	v, err := tx.Get(store.Outbox, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	return &r, nil
}

func save(tx store.Tx, key string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("outbox: encoding notice: %w", err)
	}
	return tx.Put(store.Outbox, key, b)
}

// errStop ends a scan early; it never leaves this package.
var errStop = errors.New("outbox: stop scan")

// scanPage is how many entries one Store.Scan call returns.
const scanPage = 100

// scan calls fn for the entries under prefix, in key order, until fn
// returns errStop or the prefix ends. It reads page by page outside any
// transaction, as the store contract has range reads: each page is a
// snapshot of its own, so a notice sent or given up on meanwhile may be
// missed or seen in its old state. Every caller tolerates that: a claim
// checks again in its Update, and Depth is a gauge.
func scan(ctx context.Context, st store.Store, prefix string, fn func(id string, v []byte) error) error {
	// No key is the bare prefix, so the keys after it are the prefix's own,
	// then those of later prefixes.
	after := prefix
	for {
		page, next, err := st.Scan(ctx, store.Outbox, after, scanPage)
		if err != nil {
			return err
		}
		for _, kv := range page {
			if !strings.HasPrefix(kv.Key, prefix) {
				return nil
			}
			if err := fn(kv.Key[len(prefix):], kv.Value); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
		}
		// Each page starts after the last, so this ends with the bucket.
		if next == "" {
			return nil
		}
		after = next
	}
}

// Counts is how full the outbox is, for metrics and alerts.
type Counts struct {
	// Queued notices, including those waiting for a retry or being sent.
	Queued int
	// Retrying is the queued notices that failed at least once: more than
	// zero for long means the relay is refusing or unreachable.
	Retrying int
	// Dead is the notices given up on, kept until an operator requeues them.
	Dead int
	// Oldest is when the oldest queued notice's change happened (zero when
	// none is queued): now minus Oldest is how late the mail is.
	Oldest time.Time
}

// Depth counts the outbox. Its two scans are not one snapshot: a notice
// given up on between them may be counted in both or neither.
func Depth(ctx context.Context, st store.Store) (Counts, error) {
	var c Counts
	err := scan(ctx, st, queuedPrefix, func(_ string, v []byte) error {
		c.Queued++
		var r record
		if json.Unmarshal(v, &r) != nil {
			// Damaged: the next drain moves it to the dead letters.
			return nil
		}
		if r.Attempts > 0 {
			c.Retrying++
		}
		if c.Oldest.IsZero() {
			c.Oldest = r.Notice.At
		}
		return nil
	})
	if err != nil {
		return Counts{}, err
	}
	err = scan(ctx, st, deadPrefix, func(string, []byte) error {
		c.Dead++
		return nil
	})
	if err != nil {
		return Counts{}, err
	}
	return c, nil
}

// Dead returns up to limit notices given up on, oldest first.
func Dead(ctx context.Context, st store.Store, limit int) ([]Entry, error) {
	var out []Entry
	err := scan(ctx, st, deadPrefix, func(id string, v []byte) error {
		if len(out) >= limit {
			return errStop
		}
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("outbox: decoding dead notice %s: %w", id, err)
		}
		out = append(out, r.entry(id))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ErrUnknown: Requeue was given an ID that names no dead notice.
var ErrUnknown = errors.New("outbox: no dead notice has this ID; list them to see the IDs")

// Requeue puts a dead notice back in the queue with its attempts reset, for
// an operator who has fixed what made it fail. Call Sender.Kick after.
func Requeue(ctx context.Context, st store.Store, id string) error {
	if !validID(id) {
		return ErrUnknown
	}
	return st.Update(ctx, func(tx store.Tx) error {
		r, err := load(tx, deadPrefix+id)
		if err != nil {
			return fmt.Errorf("reading dead notice %s: %w", id, err)
		}
		if r == nil {
			return ErrUnknown
		}
		if err := r.Notice.check(); err != nil {
			return fmt.Errorf("outbox: dead notice %s cannot be sent again: %w", id, err)
		}
		if err := tx.Delete(store.Outbox, deadPrefix+id); err != nil {
			return err
		}
		return save(tx, queuedPrefix+id, &record{Notice: r.Notice})
	})
}
