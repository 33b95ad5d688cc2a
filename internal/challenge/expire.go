package challenge

import (
	"context"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// Expiry of held operations, in the audit trail.
//
// An operation that is never confirmed or cancelled is not deleted by
// anyone: the store forgets it when its lifetime ends. Its end is still a
// security event an examiner asks about ("did the customer abandon the
// transfer, or was it done?"), so it is recorded from its customer's
// index, which outlives the operations it lists (saveIndex): the
// customer's next held operation records the expiries it finds, and
// AuditExpired, run by the background worker, records the rest. Entries
// confirmed, cancelled or discarded have left the index, their end
// audited then, so each operation's end is recorded once.

// auditExpired records e's expiry; e, held by service/user, is past it.
func auditExpired(tx store.Tx, service, user string, e heldEntry, now time.Time) error {
	return audit.Append(tx, audit.Record{Time: now, Event: audit.Expired, Service: service, User: user, Actor: "system",
		Kind: e.Kind, Rule: e.Rule, Digest: e.Digest, Detail: "not confirmed before " + e.Expires.UTC().Format(time.RFC3339) + "; not executed"})
}

// expiryScanLimit bounds the customers' indexes one AuditExpired call
// reads; the next call goes on after the last.
const expiryScanLimit = 5000

// AuditExpired records the expiry of held operations whose lifetime ended
// unconfirmed, and takes them off their customers' indexes, one customer
// per transaction. It reads at most expiryScanLimit indexes a call, going
// on where the last call stopped, and returns how many expiries it
// recorded. Call it from a periodic task (an index outlives its last
// operation by FateMemory, so a pass over every index within that time
// misses none).
func (m *Manager) AuditExpired(ctx context.Context) (int, error) {
	m.expiring.Lock()
	defer m.expiring.Unlock()
	now := m.Now()
	var keys []string
	from := m.expiring.after
	if from == "" {
		from = indexPrefix
	}
	last := ""
	complete, err := m.eachIndexKey(ctx, from, expiryScanLimit, func(key string, idx *heldIndex) bool {
		last = key
		for _, e := range idx.Ops {
			if !now.Before(e.Expires) {
				keys = append(keys, key)
				break
			}
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	m.expiring.after = last
	if complete {
		m.expiring.after = ""
	}
	recorded := 0
	for _, key := range keys {
		n := 0
		// Read again in the write: a confirmation or a new hold may have
		// changed the index since the scan.
		err := m.store.Update(ctx, func(tx store.Tx) error {
			n = 0
			idx, err := loadIndex(tx, key)
			if err != nil {
				return err
			}
			kept := idx.Ops[:0]
			for _, e := range idx.Ops {
				if now.Before(e.Expires) {
					kept = append(kept, e)
					continue
				}
				if err := auditExpired(tx, idx.Service, idx.User, e, now); err != nil {
					return err
				}
				n++
			}
			if n == 0 {
				return nil
			}
			idx.Ops = kept
			return m.saveIndex(tx, key, idx)
		})
		if err != nil {
			return recorded, err
		}
		recorded += n
	}
	return recorded, nil
}
