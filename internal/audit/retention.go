package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Retention: records older than the configured retention are deleted by
// the background worker (Prune), a bounded batch per transaction with a
// pause between batches, so that pruning a large backlog never holds the
// store's writer long enough to delay a confirmation. Records are keyed
// by time (store.AppendAt), so the old ones are the first keys of the
// bucket: a prune reads from the start and stops at the first record it
// keeps.

// PruneOptions bound one Prune call.
type PruneOptions struct {
	// Batch is how many records one transaction deletes, each with its
	// link in the chain. Default and most: 60 (two keys a record within
	// store.MaxTxnKeys).
	Batch int
	// Batches is how many transactions one call runs at most; the next
	// call goes on. Default 50.
	Batches int
	// Pause is the time between two batches, in which the store's writer
	// serves requests. Default 10ms.
	Pause time.Duration
}

// maxPruneBatch keeps a batch's deletions, records and their links,
// within store.MaxTxnKeys.
const maxPruneBatch = 60

func (o *PruneOptions) defaults() {
	if o.Batch <= 0 || o.Batch > maxPruneBatch {
		o.Batch = maxPruneBatch
	}
	if o.Batches <= 0 {
		o.Batches = 50
	}
	if o.Pause <= 0 {
		o.Pause = 10 * time.Millisecond
	}
}

// Prune deletes the records from before before, at most o.Batches
// batches of o.Batch records, and returns how many it deleted and whether
// none older is left. It stops early, without error, when ctx ends.
func Prune(ctx context.Context, s store.Store, before time.Time, o PruneOptions) (deleted int, done bool, err error) {
	o.defaults()
	cutoff := store.TimeCursor(before)
	for batch := range o.Batches {
		if batch > 0 {
			select {
			case <-ctx.Done():
				return deleted, false, nil
			case <-time.After(o.Pause):
			}
		}
		keys, last, err := oldKeys(ctx, s, cutoff, before, o.Batch)
		if err != nil || len(keys) == 0 {
			return deleted, err == nil, err
		}
		err = s.Update(ctx, func(tx store.Tx) error {
			for _, k := range keys {
				if err := tx.Delete(store.Audit, k); err != nil {
					return err
				}
				if err := tx.Delete(store.Audit, chainPrefix+k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return deleted, false, err
		}
		deleted += len(keys)
		if last {
			return deleted, true, nil
		}
	}
	return deleted, false, nil
}

// oldKeys returns up to n keys of records from before before (whose time
// keys sort before cutoff), from the start of the trail; last says the
// trail has no older ones after them.
func oldKeys(ctx context.Context, s store.Store, cutoff string, before time.Time, n int) (keys []string, last bool, err error) {
	after := ""
	for {
		page, next, err := s.Scan(ctx, store.Audit, after, n)
		if err != nil {
			return nil, false, err
		}
		for _, kv := range page {
			old := kv.Key < cutoff
			if legacyKey(kv.Key) {
				// A counter key says nothing of its time: its record does.
				var r Record
				old = json.Unmarshal(kv.Value, &r) == nil && r.Time.Before(before)
				if !old {
					continue
				}
			}
			if !old {
				return keys, true, nil
			}
			keys = append(keys, kv.Key)
			if len(keys) == n {
				return keys, false, nil
			}
		}
		if next == "" {
			return keys, true, nil
		}
		after = next
	}
}
