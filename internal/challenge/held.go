package challenge

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
)

// How a held operation is kept (SECURITY.md 31).
//
// The whole operation — method, URI, host, headers, body, shown fields,
// session hash — is one value sealed with AES-256-GCM by the sealer of the
// TOTP secrets, bound to its challenge ID (seal's context), so a sealed
// value copied onto another challenge does not open. It is stored as a
// chunked value at its challenge ID in store.Pending, to live the
// challenge's lifetime: an ordinary form is one chunk written by the hold's
// own transaction (store.PutChunked), a 10 MiB payroll file ten chunks
// staged first (store.StageChunked), each within one etcd request; the
// store forgets the operation when it expires, sweep or not. Nothing of the request is in the clear; the store's chunk
// header says only the sealed value's size and digest.
//
// Beside the operations, each customer with held operations has an index
// (customerKey) listing them oldest first with their sizes, written in the
// transaction that adds or removes one; the caps are counted from it, never
// by a range read. A key rotation needs nothing more: an operation sealed
// under a retired key opens as long as that key stays configured, which
// for a held operation is one lifetime (minutes).

// Config sets how long operations wait for a code and how many a customer
// may have waiting.
//
// Beyond either cap the customer's OLDEST waiting operations are discarded
// (audited "cancelled" by the system), and the new one is held; the newest
// is always kept, even alone above MaxBytes (it is bounded by the
// gateway's max_body). The new one is not refused, because:
//   - Only requests carrying the customer's own bank session create
//     operations for that customer, so a discard only ever hits the
//     customer's own operations, never another customer's.
//   - Discarding never releases anything: an operation is executed only
//     with its own code, so this fails closed as much as a refusal does.
//   - A refusal would shut the customer out of every protected operation
//     for up to a lifetime after a few abandoned confirm pages (back
//     button, double submits), with no way to list or cancel operations
//     whose pages they closed; and it would hand anyone who can make the
//     customer's browser submit requests (a bank without CSRF protection)
//     a lasting denial of service by keeping the queue full, where
//     discarding lets the customer's latest request through.
//   - The customer acts on the operation they just submitted; the oldest
//     is the one least likely still on their screen.
type Config struct {
	// Lifetime of a paused operation. Default: 5 minutes.
	Lifetime time.Duration
	// MaxOps is how many operations one customer may have waiting for a
	// code. Default 5, at most MaxOpsLimit.
	MaxOps int
	// MaxBytes bounds the bytes one customer's waiting operations take in
	// the store, sealed (body, headers, shown fields and about 300 bytes
	// each). Default 48 MiB: four bodies of the default max_body (10 MiB)
	// with room for their headers. At most store.MaxChunkedSize.
	MaxBytes int
}

// Defaults and limits of Config.
const (
	DefaultMaxOps   = 5
	DefaultMaxBytes = 48 << 20
	// MaxOpsLimit keeps one Pause within store.MaxTxnKeys writes when it
	// discards every other operation of the customer: each discard deletes
	// a header, its chunks and writes an audit record (3·MaxOps), the
	// discarded chunks number at most MaxBytes/MaxValueSize plus one per
	// operation (64, with MaxBytes ≤ MaxChunkedSize), and Pause writes
	// five keys of its own (index, header, the chunk of a request that
	// fits in one value, fate, audit record): 3·16 + 64 + 5 = 117 ≤ 128.
	MaxOpsLimit = 16
)

func (c *Config) defaults() error {
	if c.Lifetime <= 0 {
		c.Lifetime = 5 * time.Minute
	}
	if c.MaxOps == 0 {
		c.MaxOps = DefaultMaxOps
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	switch {
	case c.MaxOps < 1 || c.MaxOps > MaxOpsLimit:
		return fmt.Errorf("challenge: %d operations waiting per customer; want 1 to %d", c.MaxOps, MaxOpsLimit)
	case c.MaxBytes < 1 || c.MaxBytes > store.MaxChunkedSize:
		return fmt.Errorf("challenge: %d bytes waiting per customer; want 1 to %d (%d MiB)", c.MaxBytes, store.MaxChunkedSize, store.MaxChunkedSize>>20)
	}
	return nil
}

// sealContext binds a sealed operation to its challenge ID.
func sealContext(id string) []byte { return []byte("otpgate held operation v1\x00" + id) }

// seal encodes op and seals it: the length of op's JSON without the body
// (uvarint), that JSON, then the body as is (JSON would make a 10 MiB body
// 13 MiB).
func (m *Manager) seal(op *Operation) ([]byte, error) {
	meta := *op
	meta.Body = nil
	j, err := json.Marshal(&meta)
	if err != nil {
		return nil, fmt.Errorf("encoding operation: %w", err)
	}
	plain := make([]byte, 0, binary.MaxVarintLen64+len(j)+len(op.Body))
	plain = binary.AppendUvarint(plain, uint64(len(j)))
	plain = append(append(plain, j...), op.Body...)
	sealed, err := m.sealer.Seal(plain, sealContext(op.ID))
	clear(plain) // the request's credentials do not linger in freed memory
	return sealed, err
}

// open opens the operation sealed at id.
func (m *Manager) open(id string, sealed []byte) (*Operation, error) {
	plain, err := m.sealer.Open(sealed, sealContext(id))
	if err != nil {
		return nil, fmt.Errorf("opening held operation %s: %w", id, err)
	}
	n, k := binary.Uvarint(plain)
	if k <= 0 || n > uint64(len(plain)-k) {
		return nil, fmt.Errorf("opening held operation %s: %w", id, seal.ErrCorrupt)
	}
	var op Operation
	if err := json.Unmarshal(plain[k:k+int(n)], &op); err != nil || op.ID != id {
		return nil, fmt.Errorf("opening held operation %s: decoding: %w", id, errors.Join(seal.ErrCorrupt, err))
	}
	if body := plain[k+int(n):]; len(body) > 0 {
		op.Body = body
	}
	return &op, nil
}

// heldIndex lists one customer's held operations, oldest first.
type heldIndex struct {
	// Service and User name the customer, for listing held operations
	// (List); indexes written before they were kept lack them.
	Service string      `json:"service,omitempty"`
	User    string      `json:"user,omitempty"`
	Ops     []heldEntry `json:"ops"`
}

// heldEntry is one held operation in its customer's index: enough to count
// it against the caps and to audit its discard without opening it.
type heldEntry struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	Size    int       `json:"size"` // sealed bytes
	Kind    string    `json:"kind,omitempty"`
	Rule    string    `json:"rule,omitempty"`
	Digest  string    `json:"digest,omitempty"`
}

// customerKey is the key of a customer's index in store.Pending: a digest
// of service and user, so the key has one length whatever their IDs, and
// never looks like a challenge ID (validID).
func customerKey(service, user string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%d:%s", len(service), service, len(user), user)
	return "customer/" + hex.EncodeToString(h.Sum(nil))
}

func loadIndex(tx store.Tx, key string) (*heldIndex, error) {
	v, err := tx.Get(store.Pending, key)
	if errors.Is(err, store.ErrNotFound) {
		return &heldIndex{}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx heldIndex
	if err := json.Unmarshal(v, &idx); err != nil {
		return nil, fmt.Errorf("decoding held-operation index: %w", err)
	}
	return &idx, nil
}

// saveIndex writes idx, or deletes it when empty. It lives one lifetime
// from now, as long as the newest operation it can list, and then
// FateMemory more: an entry that expires unconfirmed stays listed until
// AuditExpired (or the customer's next held operation) records its expiry.
func (m *Manager) saveIndex(tx store.Tx, key string, idx *heldIndex) error {
	if len(idx.Ops) == 0 {
		return tx.Delete(store.Pending, key)
	}
	v, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encoding held-operation index: %w", err)
	}
	return store.PutTTL(tx, store.Pending, key, v, m.cfg.Lifetime+FateMemory)
}

// hold lists e, op's entry, in its customer's index, discarding their
// oldest operations beyond the caps (see Config for why the oldest go).
// Entries past their expiry leave the index, their expiry audited; the
// store forgets their records by itself.
func (m *Manager) hold(tx store.Tx, op *Operation, e heldEntry, now time.Time) error {
	key := customerKey(op.Service, op.User)
	idx, err := loadIndex(tx, key)
	if err != nil {
		return err
	}
	var kept []heldEntry
	total := e.Size
	for _, o := range idx.Ops {
		if now.Before(o.Expires) {
			kept = append(kept, o)
			total += o.Size
		} else if err := auditExpired(tx, op.Service, op.User, o, now); err != nil {
			return err
		}
	}
	for len(kept) > 0 && (len(kept) >= m.cfg.MaxOps || total > m.cfg.MaxBytes) {
		old := kept[0]
		kept, total = kept[1:], total-old.Size
		if err := store.DeleteChunked(tx, store.Pending, old.ID); err != nil {
			return err
		}
		err := audit.Append(tx, audit.Record{Time: now, Event: audit.Cancelled, Service: op.Service, User: op.User,
			ClientIP: op.ClientIP, Actor: "system", Kind: old.Kind, Rule: old.Rule, Digest: old.Digest,
			Detail: fmt.Sprintf("discarded for a newer operation: at most %d operations and %d bytes may wait for a code", m.cfg.MaxOps, m.cfg.MaxBytes)})
		if err != nil {
			return err
		}
	}
	idx.Ops = append(kept, e)
	idx.Service, idx.User = op.Service, op.User
	return m.saveIndex(tx, key, idx)
}

// drop deletes op, sealed value and chunks, and takes it off its
// customer's index.
func (m *Manager) drop(tx store.Tx, op *Operation) error {
	if err := store.DeleteChunked(tx, store.Pending, op.ID); err != nil {
		return err
	}
	key := customerKey(op.Service, op.User)
	idx, err := loadIndex(tx, key)
	if err != nil {
		return err
	}
	kept := idx.Ops[:0]
	for _, o := range idx.Ops {
		if o.ID != op.ID {
			kept = append(kept, o)
		}
	}
	idx.Ops = kept
	return m.saveIndex(tx, key, idx)
}

// unsealedPages bounds the pages one DropUnsealed call reads.
const (
	unsealedPages    = 20
	unsealedPageSize = 100
)

// DropUnsealed deletes the paused operations that versions before sealing
// wrote in the clear: JSON under store.Put, without an expiry, so the
// store would never forget them. Every value this version writes in
// store.Pending has an expiry, and its keys (random challenge IDs, index
// digests) are never ones an old version wrote, so a key found without one
// is old and deleted without reading it again.
//
// Each call reads at most unsealedPages pages and goes on where the last
// one stopped; once a scan reaches the end, later calls return at once.
// It returns how many it deleted. Call it from a periodic task.
func (m *Manager) DropUnsealed(ctx context.Context) (int, error) {
	m.unsealed.Lock()
	defer m.unsealed.Unlock()
	deleted := 0
	for range unsealedPages {
		if m.unsealed.done {
			return deleted, nil
		}
		page, next, err := m.store.Scan(ctx, store.Pending, m.unsealed.after, unsealedPageSize)
		if err != nil {
			return deleted, err
		}
		var old []string
		for _, kv := range page {
			if kv.Expires.IsZero() {
				old = append(old, kv.Key)
			}
		}
		if len(old) > 0 {
			err := m.store.Update(ctx, func(tx store.Tx) error {
				for _, k := range old {
					if err := tx.Delete(store.Pending, k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return deleted, err
			}
			deleted += len(old)
		}
		m.unsealed.after, m.unsealed.done = next, next == ""
	}
	return deleted, nil
}
