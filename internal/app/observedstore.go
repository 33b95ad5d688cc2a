package app

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// observedStore is a store as the app opens it: every call is timed for
// the metrics, and every audit record a transaction commits is counted and
// published as a security event (events.go) once the transaction has
// committed — never for a transaction that failed, and once however often
// the store ran it. The audit trail is the list of security events, so
// every lock, unlock, reset, release and enrolment step is seen here,
// whether a customer, an administrator or the background worker made it.
type observedStore struct {
	store.Store
}

// observeStore wraps s, keeping the lead of the store's background work
// (store.Leader) if s has one.
func observeStore(s store.Store) store.Store {
	if l, ok := s.(store.Leader); ok {
		return observedLeader{observedStore{s}, l}
	}
	return observedStore{s}
}

// observedLeader is an observed store that elects the node doing its
// background work.
type observedLeader struct {
	observedStore
	store.Leader
}

// Update implements store.Store.
func (s observedStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	var runs int
	var records [][]byte
	start := time.Now()
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		// Each run starts afresh: only the last run's writes commit.
		runs++
		records = records[:0]
		return fn(&observedTx{Tx: tx, records: &records, client: clientOf(ctx)})
	})
	s.done("update", start, err)
	if runs > 1 {
		metrics.txConflicts.Add(float64(runs - 1))
	}
	if err == nil {
		committed(records)
	}
	return err
}

// View implements store.Store.
func (s observedStore) View(ctx context.Context, fn func(store.Tx) error) error {
	start := time.Now()
	err := s.Store.View(ctx, fn)
	s.done("view", start, err)
	return err
}

// Scan implements store.Store.
func (s observedStore) Scan(ctx context.Context, b store.Bucket, after string, limit int) ([]store.KV, string, error) {
	start := time.Now()
	page, next, err := s.Store.Scan(ctx, b, after, limit)
	s.done("scan", start, err)
	return page, next, err
}

func (observedStore) done(op string, start time.Time, err error) {
	metrics.txTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if errors.Is(err, store.ErrUnavailable) {
		metrics.txUnavailable.Inc()
	}
}

// Unwrap returns the store observed.
func (s observedStore) Unwrap() store.Store { return s.Store }

// observedTx keeps what a run of a transaction appends to the audit trail,
// and completes each record with the client of the request it is made
// for.
type observedTx struct {
	store.Tx
	records *[][]byte
	client  *client
}

// Put implements store.Tx.
func (t *observedTx) Put(b store.Bucket, key string, value []byte) error {
	record := b == store.Audit && audit.IsRecordKey(key)
	if record && t.client != nil {
		value = t.client.complete(value)
	}
	err := t.Tx.Put(b, key, value)
	if err == nil && record {
		// audit.Append hands over a buffer of its own, never reused.
		*t.records = append(*t.records, value)
	}
	return err
}

// client is who sent the request a transaction runs for, as the audit
// trail records them: the address in one format for customers and
// administrators (an IP address without a port: Caddy's client IP for
// customers, honouring trusted_proxies) and the User-Agent header, cut to
// maxUserAgent bytes.
type client struct {
	ip, userAgent string
}

// maxUserAgent bounds the User-Agent an audit record keeps.
const maxUserAgent = 256

type clientKey struct{}

// WithClient makes ip and userAgent the client of the store calls made
// with the returned context.
func WithClient(ctx context.Context, ip, userAgent string) context.Context {
	if len(userAgent) > maxUserAgent {
		userAgent = strings.ToValidUTF8(userAgent[:maxUserAgent], "")
	}
	return context.WithValue(ctx, clientKey{}, &client{ip: ip, userAgent: userAgent})
}

func clientOf(ctx context.Context) *client {
	c, _ := ctx.Value(clientKey{}).(*client)
	return c
}

// complete fills the client's address and User-Agent into an audit record
// that has none; a record naming its own address (one made for another
// party) is left as it is.
func (c *client) complete(value []byte) []byte {
	var r audit.Record
	if json.Unmarshal(value, &r) != nil || (r.ClientIP != "" && r.ClientIP != c.ip) || r.UserAgent != "" {
		return value
	}
	r.ClientIP, r.UserAgent = c.ip, c.userAgent
	b, err := json.Marshal(r)
	if err != nil {
		return value
	}
	return b
}

// PutTTL implements store.ExpiringTx: the wrapped transaction's.
func (t *observedTx) PutTTL(b store.Bucket, key string, value []byte, ttl time.Duration) error {
	return store.PutTTL(t.Tx, b, key, value, ttl)
}

// committed counts and publishes the audit records of a committed
// transaction.
func committed(records [][]byte) {
	for _, b := range records {
		var r audit.Record
		if json.Unmarshal(b, &r) != nil {
			continue
		}
		countAudit(&r)
		publish(&r)
	}
}

// adminClientIP is the address of an administrator's request to the admin
// API, in the format of customers' (no port). The admin endpoint is
// Caddy's own listener, not an HTTP server with trusted_proxies, so the
// connection's address is the client's; a unix socket has none.
func adminClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
