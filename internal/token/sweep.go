package token

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// linkBatch bounds the setup links one of Sweep's transactions clears: each
// is a record read and two writes (the record, the link), so a batch stays
// well within store.MaxTxnKeys.
const linkBatch = 60

// Sweep does the lifecycle's timed work: it clears expired setup links, and
// the PIN hash that went with them, from their records (the tokens stay
// Issued, and the customer issues again), and queues one renewal reminder
// per expiry date for each active token whose renewal window has opened. It
// returns the number of reminders queued.
//
// It reads the records a page at a time and changes them in transactions
// of their own that read each record again, so it is safe to run in
// several places at once: of two sweepers that both find a reminder due,
// one queues it. Links nobody uses expire in the store by themselves
// (PutTTL); Sweep clears the records that point to them.
//
// A damaged record is skipped and reported once the rest is swept, so it
// does not stop every sweep at the same place.
func (m *Manager) Sweep(ctx context.Context) (reminders int, err error) {
	now := m.Now()
	var damaged error
	err = m.scanTokens(ctx, "", func(page []store.KV) error {
		var links, due []User
		for _, kv := range page {
			r, err := decodeRecord(kv)
			if err != nil {
				damaged = cmp.Or(damaged, err)
				continue
			}
			u := User{r.Service, r.User}
			if linkExpired(r, now) {
				links = append(links, u)
			}
			if m.reminderDue(r, now) {
				due = append(due, u)
			}
		}
		for batch := range slices.Chunk(links, linkBatch) {
			if err := m.clearLinks(ctx, batch, now); err != nil {
				return err
			}
		}
		for _, u := range due {
			queued, err := m.remind(ctx, u, now)
			if err != nil {
				return err
			}
			if queued {
				reminders++
				m.kick()
			}
		}
		return nil
	})
	return reminders, cmp.Or(err, damaged)
}

// reminderDue: active, not yet expired (a long-expired token is not mailed
// when sweeping starts on an old database), window open, not yet reminded
// of this expiry date.
func (m *Manager) reminderDue(r *Record, now time.Time) bool {
	return m.effective(r, now) == Active && r.Email != "" && !r.Expires.IsZero() &&
		!now.Before(r.Expires.Add(-m.cfg.RenewWindow)) && !r.Reminded.Equal(r.Expires)
}

// remind queues u's renewal reminder, if it is still due, and marks the
// expiry date it is for, in one transaction: it is queued once however many
// sweepers found it due.
func (m *Manager) remind(ctx context.Context, u User, now time.Time) (queued bool, err error) {
	err = m.store.Update(ctx, func(tx store.Tx) error {
		queued = false
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if !m.reminderDue(r, now) {
			return nil
		}
		r.Reminded = r.Expires
		if err := save(tx, r); err != nil {
			return err
		}
		queued = true
		return enqueue(tx, Notice{Event: "renew_reminder", User: u, Email: r.Email, Expires: r.Expires, At: now})
	})
	return queued, err
}

// linkExpired: r points to a setup link that has expired.
func linkExpired(r *Record, now time.Time) bool {
	return r.LinkHash != "" && !now.Before(r.LinkExpires)
}

// clearLinks deletes the expired setup links of users and clears them, with
// the PIN hash that went with them, from their records, in one transaction.
// A record issued again or set up since it was read is left alone.
func (m *Manager) clearLinks(ctx context.Context, users []User, now time.Time) error {
	return m.store.Update(ctx, func(tx store.Tx) error {
		for _, u := range users {
			r, err := load(tx, u)
			if err != nil {
				return err
			}
			if !linkExpired(r, now) {
				continue
			}
			if err := tx.Delete(store.SetupLinks, r.LinkHash); err != nil {
				return err
			}
			r.LinkHash, r.LinkExpires, r.PINHash, r.SetupTries = "", time.Time{}, "", 0
			if err := save(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}
