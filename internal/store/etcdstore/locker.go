package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/store"
)

// lockTTL is the life of a node's lock lease: how long after this node is
// cut off from etcd its locks pass. It is kept alive every third of it,
// so a lock that is still held is valid for at least two thirds of it
// (100 s): longer than a release takes (a minute), with room for a
// keep-alive answered late.
const lockTTL = 150 * time.Second

// lockLease is the lease a node's locks are written with, granted on the
// first lock and kept alive while the store is open; a lease that is lost
// (this node cut off for lockTTL) is replaced on the next lock.
type lockLease struct {
	mu    sync.Mutex
	id    clientv3.LeaseID
	valid time.Time     // the lease lasts at least until then
	lost  chan struct{} // closed when the lease is lost
	end   context.CancelFunc
}

// get returns the lease, granting one if there is none or it was lost.
func (l *lockLease) get(ctx context.Context, s *Store) (clientv3.LeaseID, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		select {
		case <-l.lost:
		default:
			return l.id, l.lost, nil
		}
	}
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	grant, err := s.cli.Grant(gctx, int64(lockTTL/time.Second))
	cancel()
	if err != nil {
		return 0, nil, err
	}
	if l.end != nil {
		l.end()
	}
	kctx, end := context.WithCancel(context.Background())
	alive, err := s.cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		end()
		return 0, nil, err
	}
	lost := make(chan struct{})
	l.id, l.valid, l.lost, l.end = grant.ID, sent.Add(time.Duration(grant.TTL)*time.Second), lost, end
	go func() {
		defer close(lost)
		for resp := range alive {
			l.mu.Lock()
			l.valid = time.Now().Add(time.Duration(resp.TTL) * time.Second)
			l.mu.Unlock()
		}
	}()
	return grant.ID, lost, nil
}

// drop gives up lease id, if it is the current one: its keep-alive ends,
// so its locks pass within lockTTL, and the next lock gets a new lease.
func (l *lockLease) drop(id clientv3.LeaseID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id == id && l.end != nil {
		l.end()
		l.lost = nil
	}
}

// validUntil is how long the lease lasts at least; zero once lost.
func (l *lockLease) validUntil(lost <-chan struct{}) time.Time {
	select {
	case <-lost:
		return time.Time{}
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.valid
}

// stop ends the keep-alive; the lease expires by itself.
func (l *lockLease) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.end != nil {
		l.end()
	}
}

// Lock takes the locks of names under <prefix>locks/: each is a key that
// only one holder can create (its create revision is zero until then),
// written with the node's lock lease and a value of its own. A waiter
// watches the key until it is deleted, then tries again. A node that dies
// or is cut off loses its locks with the lease, lockTTL after its last
// keep-alive. With provisional above zero, the write that takes each lock
// also writes the holder's fence of its name, <prefix>fences/<name>/<value>,
// on a lease of the store's that lasts at least that long. Taking a lock
// is one write, freeing it one more.
func (s *Store) Lock(ctx context.Context, names []string, provisional time.Duration) (store.Held, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	h := &held{s: s, keys: map[string]int64{}, token: s.node + "/" + randomToken()}
	var fenceLease clientv3.LeaseID
	if provisional > 0 {
		var err error
		if fenceLease, err = s.leases.get(ctx, s, provisional); err != nil {
			return nil, s.ctxOr(ctx, err)
		}
		h.provisional = true
	}
	for attempt := 0; ; attempt++ {
		lease, lost, err := s.locking.get(ctx, s)
		if err != nil {
			return nil, s.ctxOr(ctx, err)
		}
		h.lease, h.lost = lease, lost
		err = h.take(ctx, names, fenceLease)
		if err == nil {
			return h, nil
		}
		h.Unlock(0)
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The lease was revoked (an operator, etcd restored from a
			// snapshot): once more with a new one.
			s.locking.drop(lease)
			h = &held{s: s, keys: map[string]int64{}, token: s.node + "/" + randomToken(), provisional: h.provisional}
			continue
		}
		return nil, s.ctxOr(ctx, err)
	}
}

// take creates the keys of names in order.
func (h *held) take(ctx context.Context, names []string, fenceLease clientv3.LeaseID) error {
	s := h.s
	for _, name := range names {
		key := s.prefix + "locks/" + name
		put := []clientv3.Op{clientv3.OpPut(key, h.token, clientv3.WithLease(h.lease))}
		if h.provisional {
			put = append(put, clientv3.OpPut(h.fenceKey(key), "", clientv3.WithLease(fenceLease)))
		}
		rev, err := s.lockOne(ctx, key, put)
		if err != nil {
			// The create's outcome may be unknown: the key is freed by
			// its value too.
			h.maybe = key
			return err
		}
		h.keys[key] = rev
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockOne creates key with the operations put, waiting while another
// holder has it, and returns its create revision.
func (s *Store) lockOne(ctx context.Context, key string, put []clientv3.Op) (int64, error) {
	for {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(put...).Commit()
		cancel()
		if err != nil {
			return 0, err
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		// Held: wait for the delete that frees it, from the revision the
		// failed attempt saw, so a delete in between is not missed.
		if err := s.waitDeleted(ctx, key, resp.Header.Revision+1); err != nil {
			return 0, err
		}
	}
}

// waitDeleted returns once key is deleted at or after rev, or ctx ends.
// A watch etcd cancels (compaction, a member lost) is answered by trying
// the lock again.
func (s *Store) waitDeleted(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.cli.Watch(wctx, key, clientv3.WithRev(rev), clientv3.WithFilterPut()) {
		if resp.Err() != nil || len(resp.Events) > 0 {
			return nil
		}
	}
	return ctx.Err()
}

// held is one Lock's keys.
type held struct {
	s           *Store
	lease       clientv3.LeaseID
	lost        <-chan struct{}
	keys        map[string]int64 // key → its create revision
	maybe       string           // a key whose create's outcome is unknown
	token       string
	provisional bool // its names are fenced while it holds them
	once        sync.Once
}

// fenceKey is the holder's fence of the name of lock key key.
func (h *held) fenceKey(key string) string {
	return h.s.prefix + "fences/" + key[len(h.s.prefix+"locks/"):] + "/" + h.token
}

// ValidUntil implements store.Held.
func (h *held) ValidUntil() time.Time { return h.s.locking.validUntil(h.lost) }

// Unlock implements store.Held: one transaction writes the fences and
// deletes the keys that are still this lock's (one that passed with a
// lost lease may be another's by then). It is tried again, with back-off,
// until it is written, the lease is lost (the locks are gone; a fence is
// still written), or the store is closed.
func (h *held) Unlock(fence time.Duration) {
	h.once.Do(func() { go h.unlock(fence) })
}

func (h *held) unlock(fence time.Duration) {
	s := h.s
	wait := 100 * time.Millisecond
	// Past it the lease is given up rather than kept alive with locks it
	// cannot free.
	giveUp := time.Now().Add(max(fence, lockTTL))
	for attempt := 1; ; attempt++ {
		err := h.write(fence)
		if err == nil {
			return
		}
		if time.Now().After(giveUp) {
			// The lease is given up, so the locks pass with it; a
			// provisional fence stays until its own lease ends.
			s.locking.drop(h.lease)
			s.logger.Error("otpgate: freeing a session lock in etcd failed; the node's lock lease is given up, so its locks pass within lockTTL", zap.Int("attempts", attempt), zap.Error(err))
			return
		}
		select {
		case <-h.lost:
			if fence == 0 {
				return
			}
		default:
		}
		if s.closed.Load() {
			s.logger.Error("otpgate: the store closed before a session lock was freed; it passes with its lease", zap.Error(err))
			return
		}
		s.logger.Warn("otpgate: freeing a session lock in etcd failed; trying again", zap.Int("attempt", attempt), zap.Error(err))
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Second)
	}
}

// write deletes the lock's keys, and writes the holder's fences of their
// names (fence above zero) or deletes its provisional ones.
func (h *held) write(fence time.Duration) error {
	s := h.s
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var fences []clientv3.Op
	if fence > 0 {
		grant, err := s.cli.Grant(ctx, int64((fence+time.Second-1)/time.Second))
		if err != nil {
			return err
		}
		for key := range h.keys {
			fences = append(fences, clientv3.OpPut(h.fenceKey(key), "", clientv3.WithLease(grant.ID)))
		}
	}
	if h.maybe != "" {
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(h.maybe), "=", h.token)).
			Then(clientv3.OpDelete(h.maybe), clientv3.OpDelete(h.fenceKey(h.maybe))).Commit(); err != nil {
			return err
		}
	}
	// Each key on its own: still this lock's (one that passed with a lost
	// lease may be another's by then), it goes with the holder's
	// provisional fence, in the write that puts the holder's fence.
	for key, rev := range h.keys {
		ops := append([]clientv3.Op(nil), fences...)
		if fence == 0 && h.provisional {
			ops = append(ops, clientv3.OpDelete(h.fenceKey(key)))
		}
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
			Then(append(ops, clientv3.OpDelete(key))...).Else(fences...).Commit(); err != nil {
			return err
		}
		fences = nil
	}
	return nil
}

// FencedUntil reads the fences of names, every holder's; each lasts as
// long as its lease, whose time to live etcd counts, so no two gateways'
// clocks are compared.
func (s *Store) FencedUntil(ctx context.Context, names []string) (time.Time, error) {
	if s.closed.Load() {
		return time.Time{}, errClosed
	}
	if len(names) == 0 {
		return time.Time{}, nil
	}
	ops := make([]clientv3.Op, 0, len(names))
	for _, name := range names {
		ops = append(ops, clientv3.OpGet(s.prefix+"fences/"+name+"/", clientv3.WithPrefix()))
	}
	tctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(tctx).Then(ops...).Commit()
	if err != nil {
		return time.Time{}, s.ctxOr(ctx, err)
	}
	var last time.Time
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			asked := time.Now()
			ttl, err := s.cli.TimeToLive(tctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				return time.Time{}, s.ctxOr(ctx, err)
			}
			if until := asked.Add(time.Duration(ttl.TTL) * time.Second); ttl.TTL > 0 && until.After(last) {
				last = until
			}
		}
	}
	return last, nil
}

// ctxOr is ctx's error when ctx ended, else err as the store's.
func (s *Store) ctxOr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, store.ErrUnavailable):
		return err
	}
	return classify(err)
}

var (
	_ store.Locker = (*Store)(nil)
	_ store.Held   = (*held)(nil)
)
