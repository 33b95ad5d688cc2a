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

// Hash is the key a cookie value is stored under, and the session handle
// challenges are bound to.
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
	b, _ := json.Marshal(Binding{ID: hex.EncodeToString(raw), Service: service, User: user, Created: now, Seen: now})
	return m.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(store.Sessions, Hash(cookieValue), b); err != nil {
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
			found, b = true, cur
			enc, _ := json.Marshal(cur)
			return tx.Put(store.Sessions, key, enc)
		})
		if err != nil || !found {
			return Binding{}, false, err
		}
	}
	return b, true, nil
}

func (m *Manager) expired(b Binding, now time.Time) bool {
	return now.Sub(b.Seen) >= m.Idle || now.Sub(b.Created) >= m.MaxAge
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
		enc, _ := json.Marshal(b)
		if err := tx.Put(store.Sessions, Hash(newValue), enc); err != nil {
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

// Sweep removes expired bindings.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	now := m.Now()
	var n int
	err := m.store.Update(ctx, func(tx store.Tx) error {
		var gone []string
		err := tx.ForEach(store.Sessions, func(k string, v []byte) error {
			var b Binding
			if json.Unmarshal(v, &b) != nil || m.expired(b, now) {
				gone = append(gone, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := tx.Delete(store.Sessions, k); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	return n, err
}
