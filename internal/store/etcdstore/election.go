package etcdstore

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/otpgate/otpgate/internal/store"
)

// Campaign runs for the lead of the store's background work in an etcd
// election (concurrency.Election) under <prefix>election/worker. The lead
// lives on a session lease of ElectionTTL that this node keeps alive: a node
// that dies, or is cut off from etcd, loses it within that time, and the
// next candidate leads. A node cut off notices first: its client stops
// keeping the lease alive after its TTL passes without an answer, and lost
// closes then, about when etcd expires the lease and another node takes
// over. Clocks and delays can make the two leads overlap by a moment; the
// background work keeps its own claims (outbox leases, reminder marks
// written in the transaction that queues them), so an overlap sends nothing
// twice.
func (s *Store) Campaign(ctx context.Context) (<-chan struct{}, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	// The lease is granted here under ctx and a deadline; NewSession's own
	// grant would wait for etcd without one.
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	grant, err := s.cli.Grant(gctx, int64((s.electionTTL+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, classify(err)
	}
	// The session's keep-alive ends with sctx: when the lead is handed
	// back or lost, never with ctx alone (Resign needs the session).
	sctx, stop := context.WithCancel(context.Background())
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(grant.ID), concurrency.WithContext(sctx))
	if err != nil {
		stop()
		s.revoke(grant.ID)
		return nil, classify(err)
	}
	end := func() {
		stop()
		s.revoke(grant.ID)
	}
	e := concurrency.NewElection(sess, s.prefix+"election/worker")
	if err := e.Campaign(ctx, s.node); err != nil {
		end()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, classify(err)
	}
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			e.Resign(rctx)
			cancel()
		case <-sess.Done():
		}
		end()
	}()
	return lost, nil
}

// revoke hands a lease back, so that what it carries (a candidacy, a lead)
// goes at once rather than when it expires; on failure it expires.
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.cli.Revoke(ctx, id)
}

var _ store.Leader = (*Store)(nil)
