package challenge

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Waiting is a held operation waiting for a code, as an operator sees it:
// who held it, what kind of operation it is, when it expires and the
// digest of the request. Nothing of the request itself, which is sealed.
type Waiting struct {
	ID      string    `json:"id"`
	Service string    `json:"service,omitempty"`
	User    string    `json:"user,omitempty"`
	Kind    string    `json:"kind,omitempty"`
	Rule    string    `json:"rule,omitempty"`
	Expires time.Time `json:"expires"`
	Digest  string    `json:"digest,omitempty"`
}

// indexPrefix is the prefix of every customer's index in store.Pending.
const indexPrefix = "customer/"

// indexPage is how many customers' indexes one read of the bucket returns.
const indexPage = 500

// eachIndex calls fn for the index of every customer with held operations,
// in key order, until fn returns false, limit indexes were visited, or the
// indexes end; complete says they ended. Pages are read outside any
// transaction (the store contract's scans), so an operation held or
// released meanwhile may or may not be seen.
func (m *Manager) eachIndex(ctx context.Context, limit int, fn func(*heldIndex) bool) (complete bool, err error) {
	return m.eachIndexKey(ctx, indexPrefix, limit, func(_ string, idx *heldIndex) bool { return fn(idx) })
}

// eachIndexKey is eachIndex from the first index after after (indexPrefix
// for the first), telling fn each index's key too.
func (m *Manager) eachIndexKey(ctx context.Context, after string, limit int, fn func(key string, idx *heldIndex) bool) (complete bool, err error) {
	seen := 0
	for {
		page, next, err := m.store.Scan(ctx, store.Pending, after, indexPage)
		if err != nil {
			return false, err
		}
		for _, kv := range page {
			if !strings.HasPrefix(kv.Key, indexPrefix) {
				return true, nil
			}
			if seen == limit {
				return false, nil
			}
			seen++
			var idx heldIndex
			if json.Unmarshal(kv.Value, &idx) != nil {
				continue // damaged: it expires with its operations
			}
			if !fn(kv.Key, &idx) {
				return false, nil
			}
		}
		if next == "" {
			return true, nil
		}
		after = next
	}
}

// CountWaiting counts the held operations waiting for a code, from at
// most limit customers' indexes; complete says every customer's was read
// (else n is a lower bound). It reads one small record per customer with
// held operations, never the operations themselves.
func (m *Manager) CountWaiting(ctx context.Context, limit int) (n int, complete bool, err error) {
	now := m.Now()
	complete, err = m.eachIndex(ctx, limit, func(idx *heldIndex) bool {
		for _, e := range idx.Ops {
			if now.Before(e.Expires) {
				n++
			}
		}
		return true
	})
	return n, complete, err
}

// List returns up to limit held operations waiting for a code, of service
// (every service when "") and, with a service, of user (every user when
// ""), ordered as the customers' indexes are (by a digest of the
// customer), oldest first for each customer. more says there were more
// than limit.
func (m *Manager) List(ctx context.Context, service, user string, limit int) (out []Waiting, more bool, err error) {
	now := m.Now()
	add := func(idx *heldIndex) bool {
		for _, e := range idx.Ops {
			if !now.Before(e.Expires) {
				continue
			}
			if len(out) == limit {
				more = true
				return false
			}
			out = append(out, Waiting{ID: e.ID, Service: idx.Service, User: idx.User, Kind: e.Kind, Rule: e.Rule, Expires: e.Expires, Digest: e.Digest})
		}
		return true
	}
	if service != "" && user != "" {
		// One customer: their index alone, read by its key.
		err = m.store.View(ctx, func(tx store.Tx) error {
			out, more = nil, false
			idx, err := loadIndex(tx, customerKey(service, user))
			if err != nil {
				return err
			}
			idx.Service, idx.User = service, user
			add(idx)
			return nil
		})
		return out, more, err
	}
	_, err = m.eachIndex(ctx, -1, func(idx *heldIndex) bool {
		if service != "" && idx.Service != service {
			return true
		}
		return add(idx)
	})
	return out, more, err
}
