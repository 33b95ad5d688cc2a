package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

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
// keep-alive. Taking a lock is one write, freeing it one more.
func (s *Store) Lock(ctx context.Context, names []string) (store.Held, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	lease, lost, err := s.locking.get(ctx, s)
	if err != nil {
		return nil, s.ctxOr(ctx, err)
	}
	h := &held{s: s, lost: lost, keys: map[string]int64{}, token: s.node + "/" + randomToken()}
	for _, name := range names {
		key := s.prefix + "locks/" + name
		rev, err := s.lockOne(ctx, key, lease, h.token)
		if err != nil {
			// The create's outcome may be unknown: the key is freed by
			// its value too.
			h.maybe = key
			h.Unlock(0)
			return nil, s.ctxOr(ctx, err)
		}
		h.keys[key] = rev
	}
	return h, nil
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockOne creates key with lease and value token, waiting while another
// holder has it, and returns its create revision.
func (s *Store) lockOne(ctx context.Context, key string, lease clientv3.LeaseID, token string) (int64, error) {
	for {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, token, clientv3.WithLease(lease))).Commit()
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
	s     *Store
	lost  <-chan struct{}
	keys  map[string]int64 // key → its create revision
	maybe string           // a key whose create's outcome is unknown
	token string
	once  sync.Once
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
	// Past it the locks and the fence would have passed anyway.
	giveUp := time.Now().Add(max(fence, lockTTL))
	for attempt := 1; ; attempt++ {
		err := h.write(fence)
		if err == nil {
			return
		}
		if time.Now().After(giveUp) {
			s.logger.Error("otpgate: freeing a session lock in etcd failed until it passed", zap.Int("attempts", attempt), zap.Error(err))
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

// write deletes the lock's keys, and writes the fences of their names.
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
			fences = append(fences, clientv3.OpPut(s.prefix+"fences/"+key[len(s.prefix+"locks/"):], "", clientv3.WithLease(grant.ID)))
		}
	}
	var ifs []clientv3.Cmp
	var deletes []clientv3.Op
	for key, rev := range h.keys {
		ifs = append(ifs, clientv3.Compare(clientv3.CreateRevision(key), "=", rev))
		deletes = append(deletes, clientv3.OpDelete(key))
	}
	if h.maybe != "" {
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(h.maybe), "=", h.token)).
			Then(clientv3.OpDelete(h.maybe)).Commit(); err != nil {
			return err
		}
	}
	if len(ifs) == 0 && len(fences) == 0 {
		return nil
	}
	// All the keys are this lock's, or some passed: then each of the
	// others is deleted on its own below, still only if it is ours.
	resp, err := s.cli.Txn(ctx).If(ifs...).Then(append(fences, deletes...)...).Else(fences...).Commit()
	if err != nil || resp.Succeeded {
		return err
	}
	for key, rev := range h.keys {
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key)).Commit(); err != nil {
			return err
		}
	}
	return nil
}

// FencedUntil reads the fences of names; each lasts as long as its lease,
// whose time to live etcd counts, so no two gateways' clocks are compared.
func (s *Store) FencedUntil(ctx context.Context, names []string) (time.Time, error) {
	if s.closed.Load() {
		return time.Time{}, errClosed
	}
	if len(names) == 0 {
		return time.Time{}, nil
	}
	ops := make([]clientv3.Op, 0, len(names))
	for _, name := range names {
		ops = append(ops, clientv3.OpGet(s.prefix+"fences/"+name))
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
