// Package session binds the legacy bank's session cookies to the customers
// who logged in with them, so the gateway knows who sends a transfer without
// the bank's help.
//
// A binding is made only from a cookie value the bank SET in its response to
// a successful login, never from one the client sent: a value an attacker
// planted before login (session fixation) is never bound. Cookie values are
// stored hashed, so the database does not hold live session IDs.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// Binding is who a session belongs to.
type Binding struct {
	// ID names the login, and stays the same when the bank rotates the
	// session cookie: paused operations are bound to it.
	ID      string    `json:"id"`
	Service string    `json:"service"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`
}

// Hash is the key a cookie value is stored under. Held operations are
// bound to the binding's ID (Binding.ID), which survives a rotation of the
// cookie, not to this hash.
func Hash(cookieValue string) string {
	h := sha256.Sum256([]byte("otpgate session v1\x00" + cookieValue))
	return hex.EncodeToString(h[:])
}

// Manager keeps bindings.
type Manager struct {
	store store.Store
	// Idle is how long a binding lives without the gateway seeing it.
	Idle time.Duration
	// MaxAge bounds a binding's whole life, however active.
	MaxAge time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// New returns a Manager; zero durations take 1h idle and 12h max age.
func New(s store.Store, idle, maxAge time.Duration) *Manager {
	if idle <= 0 {
		idle = time.Hour
	}
	if maxAge <= 0 {
		maxAge = 12 * time.Hour
	}
	return &Manager{store: s, Idle: idle, MaxAge: maxAge, Now: time.Now}
}

// Bind records that cookieValue, set by the bank's response to a successful
// login, belongs to service/user.
func (m *Manager) Bind(ctx context.Context, cookieValue, service, user, clientIP string) error {
	if cookieValue == "" || service == "" || user == "" {
		return errors.New("otpgate: refusing to bind an empty session, service or user")
	}
	now := m.Now()
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("reading random login ID: %w", err)
	}
	b := Binding{ID: hex.EncodeToString(raw), Service: service, User: user, Created: now, Seen: now}
	return m.store.Update(ctx, func(tx store.Tx) error {
		if err := m.put(tx, Hash(cookieValue), b, now); err != nil {
			return err
		}
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Login, Service: service, User: user, ClientIP: clientIP, Actor: "customer"})
	})
}

// Lookup returns the binding of cookieValue. An unknown, idle or too old
// binding is reported as not found (and removed). The binding's last-seen
// time is refreshed, but written only when it is stale by a tenth of the
// idle time, so busy sessions do not cost a write per request.
func (m *Manager) Lookup(ctx context.Context, cookieValue string) (Binding, bool, error) {
	if cookieValue == "" {
		return Binding{}, false, nil
	}
	key := Hash(cookieValue)
	now := m.Now()
	var b Binding
	var found, stale, dead bool
	err := m.store.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Sessions, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("decoding session binding: %w", err)
		}
		found = true
		dead = m.expired(b, now)
		stale = now.Sub(b.Seen) > m.Idle/10
		return nil
	})
	if err != nil || !found {
		return Binding{}, false, err
	}
	if dead {
		return Binding{}, false, m.Drop(ctx, cookieValue)
	}
	if stale {
		// Read again in the write: a logout or rotation handled meanwhile
		// for another request must not be undone by writing b back.
		err := m.store.Update(ctx, func(tx store.Tx) error {
			v, err := tx.Get(store.Sessions, key)
			if errors.Is(err, store.ErrNotFound) {
				found = false
				return nil
			}
			if err != nil {
				return err
			}
			var cur Binding
			if err := json.Unmarshal(v, &cur); err != nil {
				return fmt.Errorf("decoding session binding: %w", err)
			}
			if cur.Seen.Before(now) {
				cur.Seen = now
			}
			// put deletes a binding that has aged out; it is not found.
			found, b = !m.expired(cur, now), cur
			return m.put(tx, key, cur, now)
		})
		if err != nil || !found {
			return Binding{}, false, err
		}
	}
	return b, true, nil
}

func (m *Manager) expired(b Binding, now time.Time) bool {
	return m.left(b, now) <= 0
}

// left is how long b lives from now on: until it idles out or ages out,
// whichever comes first.
func (m *Manager) left(b Binding, now time.Time) time.Duration {
	return min(m.Idle-now.Sub(b.Seen), m.MaxAge-now.Sub(b.Created))
}

// put writes b at key to expire when it idles or ages out, so the store
// removes bindings nobody looks up again (etcd with a lease, bbolt in its
// sweep). The store's clock is not the one that counts, though (nodes'
// clocks differ, and a lease is revoked late): every read still checks
// expired by the manager's. A binding with no time left is deleted.
func (m *Manager) put(tx store.Tx, key string, b Binding, now time.Time) error {
	ttl := m.left(b, now)
	if ttl <= 0 {
		return tx.Delete(store.Sessions, key)
	}
	enc, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding session binding: %w", err)
	}
	return store.PutTTL(tx, store.Sessions, key, enc, ttl)
}

// Rotate moves the binding of oldValue to newValue, when the bank replaces
// a logged-in session's ID. Nothing happens if oldValue is not bound: a
// rotation never creates a binding.
func (m *Manager) Rotate(ctx context.Context, oldValue, newValue string) error {
	if oldValue == newValue || newValue == "" {
		return nil
	}
	now := m.Now()
	return m.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Sessions, Hash(oldValue))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var b Binding
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("decoding session binding: %w", err)
		}
		if m.expired(b, now) {
			return tx.Delete(store.Sessions, Hash(oldValue))
		}
		b.Seen = now
		if err := m.put(tx, Hash(newValue), b, now); err != nil {
			return err
		}
		return tx.Delete(store.Sessions, Hash(oldValue))
	})
}

// Drop removes the binding of cookieValue (logout).
func (m *Manager) Drop(ctx context.Context, cookieValue string) error {
	if cookieValue == "" {
		return nil
	}
	return m.store.Update(ctx, func(tx store.Tx) error { return tx.Delete(store.Sessions, Hash(cookieValue)) })
}
