// Package etcdstore implements store.Store on an etcd cluster, so that
// several gateway nodes behind one load balancer share one state: a time
// step spent on one node is spent on all, a held operation is released once
// whichever node confirms it.
//
// # Transactions
//
// Update runs fn against a private view and commits what fn wrote in one
// etcd transaction that compares the mod revision of every key fn read with
// the revision it had when read (an optimistic read-check-write, as
// concurrency.STM does; STM itself is not used because the contract also
// wants write-failure tracking, limits and expiring writes). The first read
// of a run fixes a revision, linearizably; the run's other reads are made
// at that revision, so fn sees one consistent snapshot. If another
// transaction changed a key fn read, the commit fails as a whole and fn
// runs again on fresh reads, a bounded number of times. Reads see the run's
// own writes. A run that wrote nothing commits nothing: its reads were one
// linearizable snapshot.
//
// # Expiry
//
// A key written with PutTTL keeps its expiry beside its value (by the
// store's clock, as bbolt does), and Get and Scan judge it by that: an etcd
// lease is revoked late and its TTL rounded up to whole seconds, so the
// lease alone would let an expired key be read. The lease only collects
// the garbage. Leases are shared: one lease per TTL class serves every key
// written with a TTL of that class while it has enough time left, so a busy
// gateway grants a lease every so often, not one per key.
//
// # Failures
//
// Every failure of etcd (unreachable, no quorum, a deadline passed, the
// store closed) is store.ErrUnavailable, so the gateway answers 503 and
// fails closed. A commit whose answer never came (a deadline or a broken
// connection after the transaction was sent) may or may not have been
// applied: it is reported as ErrOutcomeUnknown, which wraps
// store.ErrUnavailable. The caller treats it like any failure — as not
// committed: the confirmation that sent it answers 503 and releases
// nothing. If it was applied, the held operation is consumed and its time
// step spent, unreleased; the customer sees the operation gone and starts
// it again. Nothing is ever released on a commit that was not confirmed.
//
// # Layout
//
// Keys are <prefix><bucket>/<key>; the audit trail is the audit bucket,
// whose keys (store.AppendAt) are time-ordered. Values are stored as the
// callers give them (secrets and held requests arrive sealed), behind one
// format byte and, for expiring keys, the expiry.
package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otpgate/otpgate/internal/store"
)

// ErrOutcomeUnknown marks a commit that was sent but whose answer never
// came: it may have been applied. It wraps store.ErrUnavailable; callers
// treat it as not committed and release nothing on it.
var ErrOutcomeUnknown = fmt.Errorf("%w: the transaction was sent but its outcome is unknown", store.ErrUnavailable)

// Options configure Open.
type Options struct {
	// Endpoints are the cluster members' client URLs
	// (http://127.0.0.1:2379, https://etcd1:2379).
	Endpoints []string
	// Prefix starts every key the store writes. Default: /otpgate/
	Prefix string
	// TLS, if set, is the client's TLS configuration (CA, client
	// certificate).
	TLS *tls.Config
	// Username and Password authenticate to etcd when its auth is on.
	Username, Password string
	// DialTimeout bounds Open's first contact with the cluster. Default: 5s
	DialTimeout time.Duration
	// RequestTimeout bounds each request to etcd; a request that takes
	// longer fails with store.ErrUnavailable. Default: 5s
	RequestTimeout time.Duration
	// ElectionTTL is how long the background worker's leadership
	// outlives a node that died (the election session's lease).
	// Default: 10s; at least 2s.
	ElectionTTL time.Duration
	// Now is the clock expiries are set and judged by. Default: time.Now.
	Now func() time.Time
	// Logger receives the etcd client's own warnings. Default: none.
	Logger *zap.Logger
}

// maxAttempts bounds how often Update runs fn when other transactions keep
// changing what it read; past it the Update fails with ErrUnavailable.
// Fifty gateways' worth of confirmations of one operation at once commit
// well within it.
const maxAttempts = 100

// scanPageBytes bounds the keys and values one Scan page copies out, as on
// bbolt.
const scanPageBytes = 4 << 20

// Store is an etcd-backed store.
type Store struct {
	cli         *clientv3.Client
	prefix      string
	now         func() time.Time
	timeout     time.Duration
	electionTTL time.Duration
	node        string
	closed      atomic.Bool
	leases      leases
	logger      *zap.Logger
	// locking is the node's lease for its locks (locker.go).
	locking lockLease
}

// Open connects to the cluster at o.Endpoints. It returns at once when the
// cluster answers, and also when it does not (the gateway then answers 503
// on protected operations until it does, and recovers by itself), with
// the reason in reachErr; a configuration the cluster refuses
// (authentication) is an error.
func Open(o Options) (s *Store, reachErr error, err error) {
	if len(o.Endpoints) == 0 {
		return nil, nil, errors.New("etcdstore: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = "/otpgate/"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.ElectionTTL == 0 {
		o.ElectionTTL = 10 * time.Second
	}
	if o.ElectionTTL < 2*time.Second {
		return nil, nil, fmt.Errorf("etcdstore: election TTL %v, want 2s or more (etcd's shortest lease)", o.ElectionTTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		// A broken connection is noticed within a few seconds, so a
		// request is not sent into a dead member's socket.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  o.TLS,
		Username:             o.Username,
		Password:             o.Password,
		Logger:               o.Logger,
		// gRPC waits up to two minutes between reconnections by default;
		// a member that comes back is used again within seconds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("etcdstore: %w", err)
	}
	host, _ := os.Hostname()
	s = &Store{cli: cli, prefix: o.Prefix, now: o.Now, timeout: o.RequestTimeout, electionTTL: o.ElectionTTL,
		node: fmt.Sprintf("%s/%d", host, os.Getpid()), logger: o.Logger}
	s.leases.byClass = map[time.Duration]*lease{}
	ctx, cancel := context.WithTimeout(context.Background(), o.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.prefix, clientv3.WithCountOnly(), clientv3.WithPrefix()); err != nil {
		if isAuth(err) {
			cli.Close()
			return nil, nil, fmt.Errorf("etcdstore: etcd refused the client: %w", err)
		}
		return s, err, nil
	}
	return s, nil, nil
}

// isAuth tells an error no retry cures: credentials etcd refuses.
func isAuth(err error) bool {
	for _, e := range []error{rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty,
		rpctypes.ErrInvalidAuthToken, rpctypes.ErrAuthNotEnabled, rpctypes.ErrInvalidAuthMgmt} {
		if errors.Is(err, e) {
			return true
		}
	}
	c := status.Code(err)
	return c == codes.Unauthenticated || c == codes.PermissionDenied
}

// Client is the etcd client, for tools that inspect the cluster.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix is the prefix of every key.
func (s *Store) Prefix() string { return s.prefix }

// unavailable marks err as the store failing.
func unavailable(err error) error { return fmt.Errorf("%w: etcd: %w", store.ErrUnavailable, err) }

// classify turns an etcd error into the contract's: a request over etcd's
// limits is the caller's (ErrTooLarge); everything else is the store
// failing.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrTooManyOps),
		status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("%w: etcd: %v", store.ErrTooLarge, err)
	}
	return unavailable(err)
}

var errClosed = fmt.Errorf("%w: the etcd store is closed", store.ErrUnavailable)

func (s *Store) key(b store.Bucket, key string) string { return s.prefix + string(b) + "/" + key }

// bucketEnd is the end of b's key range: '/'+1.
func (s *Store) bucketEnd(b store.Bucket) string { return s.prefix + string(b) + "0" }

// known reports whether b is one of the store's buckets; another name is
// the store misused, never "not found".
func known(b store.Bucket) error {
	for _, k := range store.Buckets {
		if b == k {
			return nil
		}
	}
	return fmt.Errorf("%w: bucket %q missing", store.ErrUnavailable, b)
}

// Values: one format byte, then for an expiring key 8 bytes of big-endian
// Unix nanoseconds, then the value.
const (
	plain    = 0
	expiring = 1
)

func encode(value []byte, exp time.Time) []byte {
	if exp.IsZero() {
		return append([]byte{plain}, value...)
	}
	out := make([]byte, 9, 9+len(value))
	out[0] = expiring
	binary.BigEndian.PutUint64(out[1:], uint64(exp.UnixNano()))
	return append(out, value...)
}

func decode(raw []byte) (value []byte, exp time.Time, err error) {
	switch {
	case len(raw) >= 1 && raw[0] == plain:
		return raw[1:], time.Time{}, nil
	case len(raw) >= 9 && raw[0] == expiring:
		return raw[9:], time.Unix(0, int64(binary.BigEndian.Uint64(raw[1:9]))), nil
	}
	return nil, time.Time{}, fmt.Errorf("%w: a value in etcd is not in the store's format", store.ErrUnavailable)
}

// Update runs fn as one etcd transaction, again on conflict.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.run(ctx, true, fn)
}

// View runs fn on one linearizable snapshot; writes fail with
// store.ErrReadOnly.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.run(ctx, false, fn)
}

// errConflict ends a run whose snapshot can no longer be read (compacted):
// it runs again like a run whose commit conflicted.
var errConflict = errors.New("etcdstore: conflict")

func (s *Store) run(ctx context.Context, writable bool, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if s.closed.Load() {
			return errClosed
		}
		t := &tx{s: s, ctx: ctx, now: s.now(), writable: writable, reads: map[string]int64{}, cache: map[string][]byte{}, writes: map[string]*write{}}
		err := fn(t)
		switch {
		case t.readFailed != nil:
			// The store failed under fn: that is the outcome, whatever
			// fn made of the error, so a failure is never read as an
			// answer (a missing key, a refusal).
			err = t.readFailed
		case err == nil:
			err = t.failed // a refused write fails the run even if fn ignored it
		}
		if err == nil && writable && len(t.writes) > 0 {
			err = t.commit()
		}
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, errConflict):
			return err
		case attempt >= maxAttempts:
			return fmt.Errorf("%w: the transaction conflicted with others %d times in a row", store.ErrUnavailable, attempt)
		}
		// Apart, randomly, so that racers do not collide again in step.
		wait := time.Duration(rand.Int64N(int64(min(time.Millisecond<<min(attempt, 6), 25*time.Millisecond)) + 1))
		select {
		case <-ctx.Done():
			return unavailable(ctx.Err())
		case <-time.After(wait):
		}
	}
}

// write is one pending write of a run; value is nil for a delete.
type write struct {
	value []byte // encoded
	ttl   time.Duration
}

// tx is one run of fn.
type tx struct {
	s        *Store
	ctx      context.Context
	now      time.Time // fixed for the run, so a key does not expire between two reads
	writable bool
	rev      int64            // the snapshot's revision, once the first read fixed it
	reads    map[string]int64 // key -> mod revision when read (0: absent)
	cache    map[string][]byte
	writes   map[string]*write
	order    []string // written keys, first write first
	bytes    int
	// failed is the first write that failed; readFailed the first read.
	failed, readFailed error
}

func (t *tx) fail(err error) error {
	if t.failed == nil {
		t.failed = err
	}
	return err
}

func (t *tx) failRead(err error) error {
	if t.readFailed == nil {
		t.readFailed = err
	}
	return err
}

// read fetches key at the run's snapshot.
func (t *tx) read(full string) ([]byte, error) {
	if v, ok := t.cache[full]; ok {
		return v, nil
	}
	if t.readFailed != nil { // the run is lost already: no more waiting on etcd
		return nil, t.readFailed
	}
	if t.writable {
		if len(t.reads) >= store.MaxTxnKeys {
			return nil, t.fail(fmt.Errorf("%w: transaction reads more than %d keys", store.ErrTooLarge, store.MaxTxnKeys))
		}
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
	defer cancel()
	var resp *clientv3.GetResponse
	var err error
	if t.rev > 0 {
		// What a key held at a revision never changes, so any member
		// that has applied the revision answers alike: a serializable
		// read, without the round of the leader a linearizable one
		// costs. A member behind it (ErrFutureRev) is asked again
		// linearizably, which waits until it has caught up.
		resp, err = t.s.cli.Get(ctx, full, clientv3.WithRev(t.rev), clientv3.WithSerializable())
		if errors.Is(err, rpctypes.ErrFutureRev) {
			resp, err = t.s.cli.Get(ctx, full, clientv3.WithRev(t.rev))
		}
	} else {
		resp, err = t.s.cli.Get(ctx, full)
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, t.failRead(errConflict)
	}
	if err != nil {
		return nil, t.failRead(classify(err))
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	var v []byte
	var rev int64
	if len(resp.Kvs) > 0 {
		v, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
	}
	t.reads[full], t.cache[full] = rev, v
	return v, nil
}

func (t *tx) Get(b store.Bucket, key string) ([]byte, error) {
	if err := known(b); err != nil {
		return nil, t.failRead(err)
	}
	if key == "" { // never stored
		return nil, store.ErrNotFound
	}
	full := t.s.key(b, key)
	var raw []byte
	if w, ok := t.writes[full]; ok {
		raw = w.value
	} else {
		var err error
		if raw, err = t.read(full); err != nil {
			return nil, err
		}
	}
	if raw == nil {
		return nil, store.ErrNotFound
	}
	v, exp, err := decode(raw)
	if err != nil {
		return nil, t.failRead(err)
	}
	if !exp.IsZero() && !t.now.Before(exp) {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (t *tx) Put(b store.Bucket, key string, value []byte) error {
	return t.put(b, key, value, 0)
}

func (t *tx) PutTTL(b store.Bucket, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return t.fail(fmt.Errorf("store: time to live %v for %s/%s, want more than zero", ttl, b, key))
	}
	return t.put(b, key, value, ttl)
}

func (t *tx) put(b store.Bucket, key string, value []byte, ttl time.Duration) error {
	if len(value) > store.MaxValueSize {
		return t.fail(fmt.Errorf("%w: %d-byte value for %s/%s, at most %d", store.ErrTooLarge, len(value), b, key, store.MaxValueSize))
	}
	var exp time.Time
	if ttl > 0 {
		exp = t.now.Add(ttl)
	}
	return t.set(b, key, &write{value: encode(value, exp), ttl: ttl}, len(value))
}

func (t *tx) Delete(b store.Bucket, key string) error {
	if key == "" && t.writable && known(b) == nil { // never stored, so already absent
		return nil
	}
	return t.set(b, key, &write{}, 0)
}

// set checks one write and records it.
func (t *tx) set(b store.Bucket, key string, w *write, n int) error {
	switch {
	case !t.writable:
		return t.fail(fmt.Errorf("%w: %s/%s", store.ErrReadOnly, b, key))
	case known(b) != nil:
		return t.fail(known(b))
	case key == "":
		return t.fail(fmt.Errorf("store: empty key in %s", b))
	case len(key) > store.MaxKeySize:
		return t.fail(fmt.Errorf("%w: %d-byte key in %s, at most %d", store.ErrTooLarge, len(key), b, store.MaxKeySize))
	}
	full := t.s.key(b, key)
	if _, ok := t.writes[full]; !ok {
		if len(t.writes) >= store.MaxTxnKeys {
			return t.fail(fmt.Errorf("%w: transaction writes more than %d keys", store.ErrTooLarge, store.MaxTxnKeys))
		}
		t.order = append(t.order, full)
	}
	t.bytes += len(key) + n
	if t.bytes > store.MaxTxnBytes {
		return t.fail(fmt.Errorf("%w: transaction writes more than %d bytes", store.ErrTooLarge, store.MaxTxnBytes))
	}
	t.writes[full] = w
	return nil
}

// commit sends the run's writes in one transaction guarded by the mod
// revisions of everything it read. errConflict: something read changed.
func (t *tx) commit() error {
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, full := range t.order {
		w := t.writes[full]
		if w.value == nil {
			ops = append(ops, clientv3.OpDelete(full))
			continue
		}
		var opts []clientv3.OpOption
		if w.ttl > 0 {
			id, err := t.s.leases.get(t.ctx, t.s, w.ttl)
			if err != nil {
				return err
			}
			opts = append(opts, clientv3.WithLease(id))
		}
		ops = append(ops, clientv3.OpPut(full, string(w.value), opts...))
	}
	cmps := make([]clientv3.Cmp, 0, len(t.reads))
	for full, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(full), "=", rev))
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
	defer cancel()
	resp, err := t.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		// A lease this node thought alive was gone (an expiry it did
		// not see coming): forget the leases and run again. Nothing was
		// applied.
		t.s.leases.forget()
		return errConflict
	case err != nil && errors.Is(classify(err), store.ErrTooLarge):
		return classify(err)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	case !resp.Succeeded:
		return errConflict
	}
	return nil
}

// Scan reads one page of b at one revision. A page visits at most limit
// keys, expired ones included, and stops once it holds scanPageBytes. It
// fetches in batches sized by the largest value seen so far, so a page of
// held bodies is not fetched a thousand MiB at a time.
func (s *Store) Scan(ctx context.Context, b store.Bucket, after string, limit int) ([]store.KV, string, error) {
	if limit < 1 || limit > store.MaxScanLimit {
		return nil, "", fmt.Errorf("store: scan limit %d, want 1…%d", limit, store.MaxScanLimit)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if s.closed.Load() {
		return nil, "", errClosed
	}
	if err := known(b); err != nil {
		return nil, "", err
	}
	from := s.key(b, after)
	if after != "" {
		from += "\x00" // the first key after after
	}
	end := s.bucketEnd(b)
	now := s.now()
	var page []store.KV
	var rev int64
	visited, size, largest := 0, 0, 64<<10
	last := ""
	for {
		n := min(limit-visited, max(1, (scanPageBytes-size)/largest), 256)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(n))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return nil, "", classify(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			key := strings.TrimPrefix(string(kv.Key), s.prefix+string(b)+"/")
			v, exp, err := decode(kv.Value)
			if err != nil {
				return nil, "", err
			}
			if exp.IsZero() || now.Before(exp) {
				page = append(page, store.KV{Key: key, Value: bytes.Clone(v), Expires: exp})
				size += len(key) + len(v)
			}
			largest = max(largest, len(v))
			visited++
			last = key
		}
		if !resp.More {
			return page, "", nil
		}
		if visited >= limit || size >= scanPageBytes {
			return page, last, nil
		}
		from = s.key(b, last) + "\x00"
	}
}

// Sweep removes nothing: etcd revokes the leases of expired keys by
// itself. Reads ignore expired keys either way.
func (s *Store) Sweep(ctx context.Context, limit int) (int, error) {
	if limit < 1 || limit > store.MaxScanLimit {
		return 0, fmt.Errorf("store: sweep limit %d, want 1…%d", limit, store.MaxScanLimit)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.closed.Load() {
		return 0, errClosed
	}
	return 0, nil
}

// Close closes the client; the keys and leases stay in etcd.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.locking.stop()
	return s.cli.Close()
}

// leases shares etcd leases among the keys written with similar times to
// live. A key written with ttl gets a lease of its class with at least ttl
// plus leaseMargin left, so it is never collected before its own expiry
// (which reads judge by); it may outlive it by about two class widths.
type leases struct {
	mu      sync.Mutex
	byClass map[time.Duration]*lease
}

type lease struct {
	id clientv3.LeaseID
	// until is when the lease expires at the earliest: measured from
	// before the grant was sent, on this node's monotonic clock.
	until time.Time
}

// leaseMargin covers the time between choosing a lease and etcd applying
// the transaction that attaches it.
const leaseMargin = 10 * time.Second

// leaseClass is the width of ttl's class: a quarter of it, at least five
// seconds, in whole seconds.
func leaseClass(ttl time.Duration) time.Duration {
	return max(5*time.Second, ttl/4).Truncate(time.Second)
}

func (l *leases) get(ctx context.Context, s *Store, ttl time.Duration) (clientv3.LeaseID, error) {
	w := leaseClass(ttl)
	need := ttl + leaseMargin
	// The class's lease lives need rounded up to the class, plus a class:
	// it serves for about one class width.
	class := (need + w - 1) / w * w
	l.mu.Lock()
	cur := l.byClass[class]
	l.mu.Unlock()
	if cur != nil && time.Until(cur.until) >= need {
		return cur.id, nil
	}
	// Granted without the lock, so that a grant etcd does not answer
	// holds up no other writer past its own deadline; writers that race
	// here grant a lease each, and the last one serves the class.
	life := class + w
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Grant(gctx, int64((life+time.Second-1)/time.Second))
	if err != nil {
		return 0, classify(err)
	}
	l.mu.Lock()
	l.byClass[class] = &lease{id: resp.ID, until: sent.Add(time.Duration(resp.TTL) * time.Second)}
	l.mu.Unlock()
	return resp.ID, nil
}

func (l *leases) forget() {
	l.mu.Lock()
	clear(l.byClass)
	l.mu.Unlock()
}

// Interface guards
var (
	_ store.Store      = (*Store)(nil)
	_ store.ExpiringTx = (*tx)(nil)
)
