package store

import (
	"context"
	"time"
)

// Locker is implemented by a store that several gateway nodes share
// (etcd): locks and fences on names that hold on every node, so that what
// one node must not overlap with on another waits for it. A store of one
// node (bbolt) does not implement it: the process's own locks suffice.
// Names are opaque to the store; callers pass digests, never secrets.
type Locker interface {
	// Lock takes the locks of names, in the order given, waiting for
	// other holders, until ctx ends (then it returns ctx's error). A lock
	// lasts until unlock is called, or at the latest for hold, after which
	// the store frees it by itself (a node that died or was cut off holding
	// it). An error other than ctx's is the store's (ErrUnavailable).
	Lock(ctx context.Context, names []string, hold time.Duration) (unlock func(), err error)
	// Fence marks names until now plus d: FencedUntil on any node reports
	// it until then.
	Fence(ctx context.Context, names []string, d time.Duration) error
	// FencedUntil is when the last fence of names passes; zero if none.
	FencedUntil(ctx context.Context, names []string) (time.Time, error)
}
