package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// The tamper-evident chain. Each record, once committed and settled, is
// linked to the one before it in key order: its link holds the SHA-256 of
// the previous link's hash, the record's key and the record's bytes. A
// record changed, deleted or slipped in among linked ones afterwards breaks
// the chain where it is, and Verify says which.
//
// Records are linked by the store's background worker (Chain), not when
// they are appended: a link written by every append would be a key every
// transaction writes, and serialise the whole cluster on etcd. Links live
// in the audit bucket under chainPrefix, after every record's key, with
// the head (the last linked record and its hash) under chainHead; the
// worker logs the head's hash, so that a copy kept elsewhere (the log
// shipper, an examiner's note) anchors the chain against a rewrite of all
// of it. Pruning deletes a record's link with it; the chain is then
// verified from the first record kept.

const (
	// chainPrefix starts the key of a record's link: chainPrefix + the
	// record's key. '~' sorts after the digits and letters of every
	// record key.
	chainPrefix = "~chain/"
	// chainHead is the key of the chain's head.
	chainHead = "~head"
)

// IsRecordKey reports whether key, of the audit bucket, is a record's (not
// a link's of the chain).
func IsRecordKey(key string) bool { return !strings.HasPrefix(key, "~") }

// link is a record's place in the chain.
type link struct {
	Prev string `json:"prev"` // the previous link's hash ("" for the first record)
	Hash string `json:"hash"`
}

// head is the last linked record.
type head struct {
	Key    string `json:"key"`
	Hash   string `json:"hash"`
	Linked int64  `json:"linked"`
}

// linkHash is the hash of the record value at key after prev.
func linkHash(prev, key string, value []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "otpgate audit chain v1\n%s\n%s\n%d\n", prev, key, len(value))
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil))
}

// chainBatch keeps one linking transaction's reads and writes (each record
// read again and its link written, and the head) within store.MaxTxnKeys.
const chainBatch = 100

// Chain links the records committed before settled that follow the chain's
// head, at most batches transactions of chainBatch records, and returns
// how many it linked and the head's hash afterwards. settled leaves time
// for transactions still committing records with earlier times (and for
// the clocks of several gateways to differ): a record committed later with
// a time before the head is reported by Verify as not linked.
func Chain(ctx context.Context, s store.Store, settled time.Time, batches int) (linked int, headHash string, err error) {
	cutoff := store.TimeCursor(settled)
	for range batches {
		h, err := readHead(ctx, s)
		if err != nil {
			return linked, "", err
		}
		keys, err := unlinked(ctx, s, h.Key, cutoff)
		if err != nil {
			return linked, h.Hash, err
		}
		if len(keys) == 0 {
			return linked, h.Hash, nil
		}
		var next head
		err = s.Update(ctx, func(tx store.Tx) error {
			cur, err := getHead(tx)
			if err != nil {
				return err
			}
			if cur != h {
				return errChainMoved
			}
			next = h
			for _, k := range keys {
				v, err := tx.Get(store.Audit, k)
				if errors.Is(err, store.ErrNotFound) {
					continue // pruned meanwhile
				}
				if err != nil {
					return err
				}
				l := link{Prev: next.Hash, Hash: linkHash(next.Hash, k, v)}
				b, _ := json.Marshal(l)
				if err := tx.Put(store.Audit, chainPrefix+k, b); err != nil {
					return err
				}
				next = head{Key: k, Hash: l.Hash, Linked: next.Linked + 1}
			}
			b, _ := json.Marshal(next)
			return tx.Put(store.Audit, chainHead, b)
		})
		if errors.Is(err, errChainMoved) {
			continue // another worker linked meanwhile: read the head again
		}
		if err != nil {
			return linked, h.Hash, err
		}
		linked += int(next.Linked - h.Linked)
	}
	h, err := readHead(ctx, s)
	return linked, h.Hash, err
}

// unlinked returns up to chainBatch keys of records after after, committed
// before cutoff.
func unlinked(ctx context.Context, s store.Store, after, cutoff string) ([]string, error) {
	var keys []string
	for len(keys) < chainBatch {
		page, next, err := s.Scan(ctx, store.Audit, after, chainBatch-len(keys))
		if err != nil {
			return nil, err
		}
		for _, kv := range page {
			if !IsRecordKey(kv.Key) || (!legacyKey(kv.Key) && kv.Key >= cutoff) {
				return keys, nil
			}
			keys = append(keys, kv.Key)
		}
		if next == "" {
			break
		}
		after = next
	}
	return keys, nil
}

// errChainMoved: the head changed between reading it and linking after it.
var errChainMoved = errors.New("audit: the chain's head moved")

func readHead(ctx context.Context, s store.Store) (head, error) {
	var h head
	err := s.View(ctx, func(tx store.Tx) error {
		var err error
		h, err = getHead(tx)
		return err
	})
	return h, err
}

func getHead(tx store.Tx) (head, error) {
	var h head
	v, err := tx.Get(store.Audit, chainHead)
	if errors.Is(err, store.ErrNotFound) {
		return h, nil
	}
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("audit: the chain's head is damaged: %w", err)
	}
	return h, nil
}

// Problem is a place where the chain does not hold.
type Problem struct {
	Key  string `json:"key"`
	Time string `json:"time,omitempty"` // the record's, when it is there
	What string `json:"what"`
}

// Report is what Verify found.
type Report struct {
	// Records is how many records the trail holds; Linked how many of
	// them the chain covers, Pending how many are newer than its head.
	Records, Linked, Pending int
	// Head is the hash of the last linked record: compare it with a copy
	// kept elsewhere to detect a rewrite of the whole chain.
	Head string
	// Problems are the records changed, deleted or inserted, in key order
	// (at most maxProblems).
	Problems []Problem
}

// maxProblems bounds the problems a Report lists.
const maxProblems = 1000

// OK reports whether the chain holds.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify walks the trail and the chain side by side, a page at a time,
// and reports every record whose link does not hold: changed since it was
// linked, deleted (a link without its record), or inserted among linked
// records (a record without a link before the head). The first record
// kept after pruning anchors the chain.
func Verify(ctx context.Context, s store.Store) (*Report, error) {
	h, err := readHead(ctx, s)
	if err != nil {
		return nil, err
	}
	rep := &Report{Head: h.Hash}
	records := &cursor{s: s, end: func(k string) bool { return !IsRecordKey(k) }}
	links := &cursor{s: s, after: chainPrefix, end: func(k string) bool { return !strings.HasPrefix(k, chainPrefix) }}
	problem := func(key string, value []byte, what string) {
		if len(rep.Problems) == maxProblems {
			return
		}
		p := Problem{Key: key, What: what}
		var r Record
		if value != nil && json.Unmarshal(value, &r) == nil {
			p.Time = r.Time.Format(time.RFC3339Nano)
		}
		rep.Problems = append(rep.Problems, p)
	}
	prev, started := "", false
	rec, err := records.next(ctx)
	if err != nil {
		return nil, err
	}
	lk, err := links.next(ctx)
	if err != nil {
		return nil, err
	}
	for rec != nil || lk != nil {
		lkey := ""
		if lk != nil {
			lkey = strings.TrimPrefix(lk.Key, chainPrefix)
		}
		switch {
		case rec != nil && (lk == nil || rec.Key < lkey):
			rep.Records++
			if h.Key != "" && rec.Key <= h.Key {
				problem(rec.Key, rec.Value, "not linked: inserted after the records around it were sealed, or committed later than the chain allows for")
			} else {
				rep.Pending++
			}
			if rec, err = records.next(ctx); err != nil {
				return nil, err
			}
			continue
		case rec == nil || lkey < rec.Key:
			problem(lkey, nil, "deleted: the chain links a record that is gone")
			// The chain goes on from the deleted record's link.
			var l link
			if json.Unmarshal(lk.Value, &l) == nil {
				prev, started = l.Hash, true
			}
		default:
			rep.Records++
			var l link
			if err := json.Unmarshal(lk.Value, &l); err != nil {
				problem(rec.Key, rec.Value, "its link is damaged")
			} else {
				if !started {
					prev, started = l.Prev, true // the first record kept anchors the chain
				}
				switch {
				case l.Prev != prev:
					problem(rec.Key, rec.Value, "the record before it was changed, deleted or inserted")
				case linkHash(prev, rec.Key, rec.Value) != l.Hash:
					problem(rec.Key, rec.Value, "changed since it was linked")
				default:
					rep.Linked++
				}
				prev = l.Hash
			}
			if rec, err = records.next(ctx); err != nil {
				return nil, err
			}
		}
		if lk, err = links.next(ctx); err != nil {
			return nil, err
		}
	}
	if started && prev != h.Hash {
		problem(chainHead, nil, "the head does not match the last link")
	}
	return rep, nil
}

// cursor reads the audit bucket's entries in key order, a page at a time,
// until end says a key is past its part of the bucket.
type cursor struct {
	s     store.Store
	after string
	end   func(string) bool
	page  []store.KV
	done  bool
}

func (c *cursor) next(ctx context.Context) (*store.KV, error) {
	for len(c.page) == 0 {
		if c.done {
			return nil, nil
		}
		page, next, err := c.s.Scan(ctx, store.Audit, c.after, pageSize)
		if err != nil {
			return nil, err
		}
		c.page, c.after, c.done = page, next, next == ""
	}
	kv := c.page[0]
	c.page = c.page[1:]
	if c.end(kv.Key) {
		c.page, c.done = nil, true
		return nil, nil
	}
	return &kv, nil
}
