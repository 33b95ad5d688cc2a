package token

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Sweep does the lifecycle's timed work, which bbolt cannot expire by
// itself: it deletes expired and orphaned setup links (their tokens stay
// Issued, and the customer issues again), and mails one renewal reminder per
// expiry date to each active token whose renewal window has opened. It
// returns the number of reminders sent.
//
// A reminder is marked sent only after the mail went out, so a mail failure
// is retried on the next sweep (and reported to OnNotifyError); run one
// sweeper per store, or a reminder may go out twice.
func (m *Manager) Sweep(ctx context.Context) (reminders int, err error) {
	now := m.Now()
	if err := m.sweepLinks(ctx, now); err != nil {
		return 0, err
	}
	if m.notifier == nil {
		return 0, nil
	}
	var due []Record
	err = m.store.View(ctx, func(tx store.Tx) error {
		due = nil
		return tx.ForEach(store.Tokens, func(_ string, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding token record: %w", err)
			}
			if m.reminderDue(&r, now) {
				due = append(due, r)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for _, r := range due {
		if err := ctx.Err(); err != nil {
			return reminders, err
		}
		u := User{r.Service, r.User}
		n := Notice{Event: "renew_reminder", User: u, Email: r.Email, Expires: r.Expires, At: now}
		if err := m.notifier.Notify(ctx, n); err != nil {
			if m.OnNotifyError != nil {
				m.OnNotifyError(n, err)
			}
			continue
		}
		err := m.store.Update(ctx, func(tx store.Tx) error {
			cur, err := load(tx, u)
			if err != nil {
				return err
			}
			// Renewed or revoked since the View: the mark would belong to
			// an expiry date the token no longer has.
			if cur.State != Active || !cur.Expires.Equal(r.Expires) {
				return nil
			}
			cur.Reminded = r.Expires
			return save(tx, cur)
		})
		if err != nil {
			return reminders, err
		}
		reminders++
	}
	return reminders, nil
}

// reminderDue: active, not yet expired (a long-expired token is not mailed
// when sweeping starts on an old database), window open, not yet reminded
// of this expiry date.
func (m *Manager) reminderDue(r *Record, now time.Time) bool {
	return m.effective(r, now) == Active && r.Email != "" && !r.Expires.IsZero() &&
		!now.Before(r.Expires.Add(-m.cfg.RenewWindow)) && !r.Reminded.Equal(r.Expires)
}

type deadLink struct {
	hash string
	l    linkRecord // zero if the link could not be read
}

// deadLinks lists setup links that expired or that no record points to any
// more (left behind by a re-issue or reset, or damaged).
func deadLinks(tx store.Tx, now time.Time) ([]deadLink, error) {
	var gone []deadLink
	// ForEach allows no writes: collect first, delete after.
	err := tx.ForEach(store.SetupLinks, func(k string, v []byte) error {
		var l linkRecord
		if json.Unmarshal(v, &l) != nil {
			gone = append(gone, deadLink{hash: k})
			return nil
		}
		if !now.Before(l.Expires) {
			gone = append(gone, deadLink{hash: k, l: l})
			return nil
		}
		u := User{l.Service, l.User}
		if !u.valid() {
			gone = append(gone, deadLink{hash: k})
			return nil
		}
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if r.LinkHash != k {
			gone = append(gone, deadLink{hash: k})
		}
		return nil
	})
	return gone, err
}

// sweepLinks deletes dead setup links and clears the expired ones, with the
// PIN hash that went with them, from their records.
func (m *Manager) sweepLinks(ctx context.Context, now time.Time) error {
	// Most sweeps find nothing; a View first spares the single writer.
	var found bool
	err := m.store.View(ctx, func(tx store.Tx) error {
		gone, err := deadLinks(tx, now)
		found = len(gone) > 0
		return err
	})
	if err != nil || !found {
		return err
	}
	return m.store.Update(ctx, func(tx store.Tx) error {
		gone, err := deadLinks(tx, now)
		if err != nil {
			return err
		}
		for _, d := range gone {
			if err := tx.Delete(store.SetupLinks, d.hash); err != nil {
				return err
			}
			u := User{d.l.Service, d.l.User}
			if !u.valid() {
				continue
			}
			r, err := load(tx, u)
			if err != nil {
				return err
			}
			if r.LinkHash != d.hash {
				continue
			}
			r.LinkHash, r.LinkExpires, r.PINHash, r.SetupTries = "", time.Time{}, "", 0
			if err := save(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}
