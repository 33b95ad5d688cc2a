package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Copied is what Copy did with one bucket.
type Copied struct {
	Bucket Bucket
	// Copied entries were written to the target (expired ones are left
	// out).
	Copied int
	// Checked entries were compared, key and value, in both stores after
	// the copy: all but those that expire within CopyCheckMargin.
	Checked int
}

// CopyCheckMargin: entries expiring this soon are copied but not compared
// afterwards, as they may expire between the two stores' reads.
const CopyCheckMargin = 2 * time.Minute

// copyBatchKeys bounds the entries one Update of the copy writes.
const copyBatchKeys = 100

// Copy copies every live entry of every bucket of from into to, byte for
// byte — secrets and held requests stay sealed; nothing is opened — with
// what is left of each expiry, then reads both stores again and compares
// them bucket by bucket (count and a digest of keys and values). to must
// hold no live entry. Neither store may change meanwhile: a gateway on from
// holds a bbolt file's lock, so copying from a bbolt file is offline by
// construction; stop the gateways of an etcd source first. now is the clock
// expiries are judged by.
func Copy(ctx context.Context, from, to Store, now func() time.Time) ([]Copied, error) {
	for _, b := range Buckets {
		live, err := firstLive(ctx, to, b)
		if err != nil {
			return nil, fmt.Errorf("reading the target's %s: %w", b, err)
		}
		if live != "" {
			return nil, fmt.Errorf("the target is not empty: %s holds %q; copy into an empty store (or another prefix)", b, live)
		}
	}
	var out []Copied
	for _, b := range Buckets {
		c := Copied{Bucket: b}
		var batch []KV
		size := 0
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			t := now()
			err := to.Update(ctx, func(tx Tx) error {
				for _, kv := range batch {
					if kv.Expires.IsZero() {
						if err := tx.Put(b, kv.Key, kv.Value); err != nil {
							return err
						}
						continue
					}
					// Left out above when already expired; a moment
					// later it still has a nanosecond at least.
					if err := PutTTL(tx, b, kv.Key, kv.Value, max(kv.Expires.Sub(t), time.Nanosecond)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("writing %d entries of %s from %q: %w", len(batch), b, batch[0].Key, err)
			}
			c.Copied += len(batch)
			batch, size = batch[:0], 0
			return nil
		}
		err := scanAll(ctx, from, b, func(kv KV) error {
			if !kv.Expires.IsZero() && !now().Before(kv.Expires) {
				return nil // expired since the page was read
			}
			if len(batch) == copyBatchKeys || size+len(kv.Key)+len(kv.Value) > MaxTxnBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, kv)
			size += len(kv.Key) + len(kv.Value)
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return out, fmt.Errorf("copying %s: %w", b, err)
		}
		out = append(out, c)
	}
	// Check: both stores read again, entry by entry.
	for i, c := range out {
		cutoff := now().Add(CopyCheckMargin)
		n1, d1, err := digest(ctx, from, c.Bucket, cutoff)
		if err != nil {
			return out, fmt.Errorf("checking %s in the source: %w", c.Bucket, err)
		}
		n2, d2, err := digest(ctx, to, c.Bucket, cutoff)
		if err != nil {
			return out, fmt.Errorf("checking %s in the target: %w", c.Bucket, err)
		}
		if n1 != n2 || !bytes.Equal(d1, d2) {
			return out, fmt.Errorf("%s differs after the copy: %d entries in the source, %d in the target (or their keys and values differ)", c.Bucket, n1, n2)
		}
		out[i].Checked = n1
	}
	return out, nil
}

// errStopScan ends scanAll early.
var errStopScan = errors.New("store: stop scan")

// scanAll calls fn for every live entry of b, in key order.
func scanAll(ctx context.Context, s Store, b Bucket, fn func(KV) error) error {
	after := ""
	for {
		page, next, err := s.Scan(ctx, b, after, 100)
		if err != nil {
			return err
		}
		for _, kv := range page {
			if err := fn(kv); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

// firstLive returns the first live key of b, "" if there is none.
func firstLive(ctx context.Context, s Store, b Bucket) (string, error) {
	first := ""
	err := scanAll(ctx, s, b, func(kv KV) error {
		first = kv.Key
		return errStopScan
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return first, err
}

// digest counts the entries of b that live past cutoff and hashes their
// keys and values, in key order.
func digest(ctx context.Context, s Store, b Bucket, cutoff time.Time) (int, []byte, error) {
	h := sha256.New()
	n := 0
	err := scanAll(ctx, s, b, func(kv KV) error {
		if !kv.Expires.IsZero() && kv.Expires.Before(cutoff) {
			return nil
		}
		n++
		fmt.Fprintf(h, "%d:%s%d:", len(kv.Key), kv.Key, len(kv.Value))
		h.Write(kv.Value)
		return nil
	})
	return n, h.Sum(nil), err
}
