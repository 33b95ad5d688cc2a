package token

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// RenewTooEarlyError is a renewal before the window opens. errors.Is
// matches it against ErrRenewTooEarly.
type RenewTooEarlyError struct {
	From time.Time // when renewal opens
}

// Error names the day renewal opens.
func (e *RenewTooEarlyError) Error() string {
	return fmt.Sprintf("%s; it opens on %s", ErrRenewTooEarly.Error(), e.From.Format(time.DateOnly))
}

// Is makes errors.Is(err, ErrRenewTooEarly) work.
func (e *RenewTooEarlyError) Is(target error) bool { return target == ErrRenewTooEarly }

// Renew extends an active or expired token by Validity, counted from its
// old expiry or from now if that has passed, so renewing early loses no
// days. It needs a right code from the token, and is open from RenewWindow
// before expiry on; asked earlier it returns a *RenewTooEarlyError without
// looking at the code, so the refusal counts no failure.
func (m *Manager) Renew(ctx context.Context, u User, code, clientIP string) (time.Time, error) {
	if !u.valid() {
		return time.Time{}, ErrInvalidUser
	}
	now := m.Now()
	var outcome error
	var expires time.Time
	var queued bool
	err := m.store.Update(ctx, func(tx store.Tx) error {
		outcome, expires, queued = nil, time.Time{}, false
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if from := r.Expires.Add(-m.cfg.RenewWindow); m.effective(r, now) == Active && now.Before(from) &&
			!(r.Locked && !m.lockExpired(r, now)) {
			outcome = &RenewTooEarlyError{From: from}
			return nil
		}
		r, outcome, queued, err = m.spendCode(tx, u, code, ForRenewal, clientIP, now, ErrNoToken)
		if err != nil || r == nil {
			return err
		}
		r.Expires = maxTime(now, r.Expires).Add(m.cfg.Validity)
		r.State = Active
		if err := save(tx, r); err != nil {
			return err
		}
		if err := audit.Append(tx, auditRecord(now, audit.Renewed, u, clientIP, actorCustomer, "expires "+r.Expires.Format(time.DateOnly))); err != nil {
			return err
		}
		expires, queued = r.Expires, true
		return enqueue(tx, Notice{Event: "renewed", User: u, Email: r.Email, Expires: r.Expires, At: now})
	})
	if err != nil {
		return time.Time{}, err
	}
	if queued {
		m.kick()
	}
	if outcome != nil {
		return time.Time{}, outcome
	}
	return expires, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Revoke ends an active or expired token at the customer's request, before
// they change phones. The gateway calls it only after the revoke operation
// was confirmed with a right code, so it asks for none. The secret is
// wiped; the expiry date is kept for the record. Without such a token it
// returns ErrNoToken.
func (m *Manager) Revoke(ctx context.Context, u User, clientIP string) error {
	if !u.valid() {
		return ErrInvalidUser
	}
	now := m.Now()
	err := m.store.Update(ctx, func(tx store.Tx) error {
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if st := m.effective(r, now); st != Active && st != Expired {
			return ErrNoToken
		}
		r.State, r.Secret = Revoked, nil
		if err := save(tx, r); err != nil {
			return err
		}
		if err := audit.Append(tx, auditRecord(now, audit.Revoked, u, clientIP, actorCustomer, "")); err != nil {
			return err
		}
		return enqueue(tx, Notice{Event: "revoked", User: u, Email: r.Email, At: now})
	})
	if err != nil {
		return err
	}
	m.kick()
	return nil
}

// Reset is the bank's answer to a lost or changed phone that was not
// revoked: whatever the state, the token goes back to None with its secret,
// PIN and setup link wiped and the lock lifted, so the customer can issue
// again (a bank reset is what allows an issue without the old token). The
// mail address is kept. The last spent time step is kept: a code spent before stays spent.
// by names the administrator for the audit trail; the customer is told at
// the address the token had.
func (m *Manager) Reset(ctx context.Context, u User, by, clientIP string) error {
	if !u.valid() {
		return ErrInvalidUser
	}
	now := m.Now()
	var email string
	err := m.store.Update(ctx, func(tx store.Tx) error {
		email = ""
		_, err := tx.Get(store.Tokens, u.key())
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		detail := ""
		if exists {
			r, err := load(tx, u)
			if err != nil {
				return err
			}
			if r.LinkHash != "" {
				if err := tx.Delete(store.SetupLinks, r.LinkHash); err != nil {
					return err
				}
			}
			email = r.Email
			detail = "was " + string(m.effective(r, now))
			if r.Locked {
				detail += ", locked"
			}
			// The address stays registered: the next issue, whoever makes
			// it with the password, is announced there (see Issue).
			if err := save(tx, &Record{Service: u.Service, User: u.ID, State: None, Email: r.Email, LastStep: r.LastStep}); err != nil {
				return err
			}
		} else {
			// Nothing to reset, but the administrator's action is still recorded.
			detail = "no token"
		}
		if err := audit.Append(tx, auditRecord(now, audit.Reset, u, clientIP, actorAdmin+by, detail)); err != nil {
			return err
		}
		return enqueue(tx, Notice{Event: "reset", User: u, Email: email, At: now})
	})
	if err != nil {
		return err
	}
	if email != "" {
		m.kick()
	}
	return nil
}

// Unlock lifts a lock after the bank has verified the customer, and resets
// the failure count. Unlocking a user who is not locked does nothing.
func (m *Manager) Unlock(ctx context.Context, u User, by, clientIP string) error {
	if !u.valid() {
		return ErrInvalidUser
	}
	now := m.Now()
	var email string
	err := m.store.Update(ctx, func(tx store.Tx) error {
		email = ""
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if !r.Locked {
			return nil
		}
		r.Locked, r.Failures, r.LockedAt = false, 0, time.Time{}
		if err := save(tx, r); err != nil {
			return err
		}
		if err := audit.Append(tx, auditRecord(now, audit.Unlocked, u, clientIP, actorAdmin+by, "")); err != nil {
			return err
		}
		email = r.Email
		return enqueue(tx, Notice{Event: "unlocked", User: u, Email: r.Email, At: now})
	})
	if err != nil {
		return err
	}
	if email != "" {
		m.kick()
	}
	return nil
}

// Get returns u's record as stored (a fresh one in state None if u has
// none), for administrators. The secret in it is sealed.
func (m *Manager) Get(ctx context.Context, u User) (*Record, error) {
	if !u.valid() {
		return nil, ErrInvalidUser
	}
	var r *Record
	err := m.store.View(ctx, func(tx store.Tx) error {
		var err error
		r, err = load(tx, u)
		return err
	})
	return r, err
}

// scanPage is how many token records one read of List, Reseal and Sweep
// covers; it also bounds the records one of Reseal's transactions writes
// (store.MaxTxnKeys).
const scanPage = 100

// scanTokens calls fn with the token records of service ("" for all) a
// page at a time, in key order, which is service then user ID. Each page is
// a read of its own and fn runs outside any transaction, so a long run
// holds none open; pages are not one snapshot, and a caller that changes a
// record reads it again in its own transaction.
func (m *Manager) scanTokens(ctx context.Context, service string, fn func(page []store.KV) error) error {
	after, prefix := "", ""
	if service != "" {
		// No key is the bare prefix (user IDs are never empty): the
		// service's keys are those right after it.
		prefix = User{Service: service}.key()
		after = prefix
	}
	for {
		page, next, err := m.store.Scan(ctx, store.Tokens, after, scanPage)
		if err != nil {
			return err
		}
		end := len(page)
		for i, kv := range page {
			if !strings.HasPrefix(kv.Key, prefix) {
				end, next = i, ""
				break
			}
		}
		if err := fn(page[:end]); err != nil {
			return err
		}
		// Every page starts after the last, so this ends with the bucket.
		if next == "" {
			return nil
		}
		after = next
	}
}

func decodeRecord(kv store.KV) (*Record, error) {
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, fmt.Errorf("decoding token record %q: %w", kv.Key, err)
	}
	return &r, nil
}

// List returns the token records of service ("" for all services), sorted
// by service and user ID, with the sealed secret and the PIN hash blanked:
// an admin listing has no use for them. It reads them a page at a time, so
// a record changed meanwhile may be listed as it was before the change.
func (m *Manager) List(ctx context.Context, service string) ([]Record, error) {
	var out []Record
	err := m.scanTokens(ctx, service, func(page []store.KV) error {
		for _, kv := range page {
			r, err := decodeRecord(kv)
			if err != nil {
				return err
			}
			r.Secret, r.PINHash = nil, ""
			out = append(out, *r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Reseal seals again, under the current key, every secret still sealed
// under a retired key, finishing a key rotation; by names the administrator.
// Afterwards the retired key can be removed from the configuration.
//
// It goes a page of records at a time, each page in a transaction of its
// own that reads every record again (it may have been revoked or re-sealed
// since the page was read), so that no transaction outgrows what a store
// takes; one audit record, written last, counts the secrets sealed again.
// It is idempotent rather than atomic as a whole: stopped part way (a
// secret under a key no longer configured, the store failing) it leaves
// the pages before re-sealed, audits and returns how many, and run again
// it re-seals what is left. A crash part way leaves those pages re-sealed
// without the audit record.
func (m *Manager) Reseal(ctx context.Context, by string) (int, error) {
	now := m.Now()
	n := 0
	err := m.scanTokens(ctx, "", func(page []store.KV) error {
		var stale []User
		for _, kv := range page {
			r, err := decodeRecord(kv)
			if err != nil {
				return err
			}
			if len(r.Secret) > 0 && !m.sealer.Current(r.Secret) {
				stale = append(stale, User{r.Service, r.User})
			}
		}
		if len(stale) == 0 {
			return nil
		}
		var done int
		err := m.store.Update(ctx, func(tx store.Tx) error {
			done = 0
			for _, u := range stale {
				r, err := load(tx, u)
				if err != nil {
					return err
				}
				if len(r.Secret) == 0 || m.sealer.Current(r.Secret) {
					continue
				}
				ctxKey := []byte(u.key())
				secret, err := m.sealer.Open(r.Secret, ctxKey)
				if err != nil {
					return fmt.Errorf("opening the secret of %s/%s: %w (is its key in retired_keys?)", r.Service, r.User, err)
				}
				if r.Secret, err = m.sealer.Seal(secret, ctxKey); err != nil {
					return err
				}
				if err := save(tx, r); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			return err
		}
		n += done
		return nil
	})
	if err != nil && n == 0 {
		return 0, err
	}
	detail := fmt.Sprintf("%d secrets sealed under the current key", n)
	if err != nil {
		detail += "; stopped: " + err.Error()
	}
	// Recorded even when the administrator's request has gone: the
	// secrets were re-sealed.
	aerr := m.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Resealed, Actor: actorAdmin + by, Detail: detail})
	})
	return n, cmp.Or(err, aerr)
}
