package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// End drops the binding of cookieValue, as Drop does, and audits the end
// of the customer's session (audit.Logout) with reason — a logout, a
// deleted or replaced session cookie — when there was one to end. The
// record names the customer, never the cookie.
func (m *Manager) End(ctx context.Context, cookieValue, reason, clientIP string) error {
	if cookieValue == "" {
		return nil
	}
	key := Hash(cookieValue)
	now := m.Now()
	return m.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Sessions, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tx.Delete(store.Sessions, key); err != nil {
			return err
		}
		var b Binding
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("decoding session binding: %w", err)
		}
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Logout, Service: b.Service, User: b.User,
			ClientIP: clientIP, Actor: "customer", Detail: reason})
	})
}
