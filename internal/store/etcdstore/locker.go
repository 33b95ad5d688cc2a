package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/otpgate/otpgate/internal/store"
)

// Lock takes the locks of names under <prefix>locks/: each is a key that
// only one holder can create (its create revision is zero until then),
// written with a lease shared by the keys of a similar time to live (the
// store's lease classes), which outlives hold by at most about a minute. A
// waiter watches the key until it is deleted, then tries again. Unlocking
// deletes the keys this call created, each only if it is still the one
// created (a lock that passed with its lease may be another's by then);
// a node that dies or is cut off holding them loses them with the lease.
// A lock costs one write to take and one to free, no lease of its own.
func (s *Store) Lock(ctx context.Context, names []string, hold time.Duration) (unlock func(), err error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	lease, err := s.leases.get(ctx, s, hold)
	if err != nil {
		return nil, s.ctxOr(ctx, err)
	}
	created := map[string]int64{}
	unlock = func() {
		for key, rev := range created {
			tctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).Then(clientv3.OpDelete(key)).Commit()
			cancel()
		}
	}
	for _, name := range names {
		key := s.prefix + "locks/" + name
		rev, err := s.lockOne(ctx, key, lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// The class's lease was revoked or expired early (etcd
			// restored from a snapshot): once more with a new one.
			s.leases.forget()
			if lease, err = s.leases.get(ctx, s, hold); err == nil {
				rev, err = s.lockOne(ctx, key, lease)
			}
		}
		if err != nil {
			unlock()
			return nil, s.ctxOr(ctx, err)
		}
		created[key] = rev
	}
	return unlock, nil
}

// lockOne creates key with lease, waiting while another holder has it,
// and returns its create revision.
func (s *Store) lockOne(ctx context.Context, key string, lease clientv3.LeaseID) (int64, error) {
	for {
		tctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Txn(tctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, s.node, clientv3.WithLease(lease))).Commit()
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
		if err := resp.Err(); err != nil {
			return nil
		}
		if len(resp.Events) > 0 {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Fence writes <prefix>fences/<name> for each name, holding when the fence
// passes, with a lease that expires with it.
func (s *Store) Fence(ctx context.Context, names []string, d time.Duration) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(names) == 0 {
		return nil
	}
	until := time.Now().Add(d)
	tctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	grant, err := s.cli.Grant(tctx, int64(d/time.Second)+2)
	if err != nil {
		return s.ctxOr(ctx, err)
	}
	ops := make([]clientv3.Op, 0, len(names))
	for _, name := range names {
		ops = append(ops, clientv3.OpPut(s.prefix+"fences/"+name, until.UTC().Format(time.RFC3339Nano), clientv3.WithLease(grant.ID)))
	}
	if _, err := s.cli.Txn(tctx).Then(ops...).Commit(); err != nil {
		return s.ctxOr(ctx, err)
	}
	return nil
}

// FencedUntil reads the fences of names in one transaction.
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
			until, err := time.Parse(time.RFC3339Nano, string(kv.Value))
			if err != nil {
				return time.Time{}, fmt.Errorf("%w: etcd: fence %s holds %q", store.ErrUnavailable, kv.Key, kv.Value)
			}
			if until.After(last) {
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

var _ store.Locker = (*Store)(nil)
