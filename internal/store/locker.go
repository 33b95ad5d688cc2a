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
	// other holders, until ctx ends (then it returns ctx's error). The
	// locks last until Unlock, however long that is, while this node
	// reaches the store; a node that dies or is cut off loses them some
	// time later (Held.ValidUntil says when at the earliest). An error
	// other than ctx's is the store's (ErrUnavailable). With provisional
	// above zero the names are also fenced, for at least that long, from
	// when each lock is taken until Unlock, which takes the fence away
	// unless it fences them itself: a node that stops or is cut off while
	// holding them leaves them fenced.
	Lock(ctx context.Context, names []string, provisional time.Duration) (Held, error)
	// FencedUntil is when the last fence of names passes, by the store's
	// clock as this node sees it; zero if none.
	FencedUntil(ctx context.Context, names []string) (time.Time, error)
}

// Held is what a Locker's Lock took.
type Held interface {
	// ValidUntil is the earliest time the locks could pass without
	// Unlock: when this node, cut off from the store from now on, would
	// lose them. Zero once they are lost.
	ValidUntil() time.Time
	// Unlock frees the locks and, with fence above zero, fences their
	// names for that long in the same write: a fence is in place before
	// anyone can take a lock. It returns at once; a write that fails is
	// tried again in the background, and the locks stay until it
	// succeeds or they are lost (a store that cannot free them makes
	// them pass, and keeps a provisional fence).
	Unlock(fence time.Duration)
}
