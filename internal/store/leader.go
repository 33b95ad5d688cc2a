package store

import "context"

// Leader is implemented by a store that several gateway nodes share (etcd):
// the background work that must run once per store — sweeps, renewal
// reminders, the mail outbox, audit retention — runs on the node that
// leads, chosen by the store. A store of one node (bbolt) does not
// implement it: its one process always leads.
type Leader interface {
	// Campaign blocks until this process leads, or ctx ends (then it
	// returns ctx's error). The lead is held until ctx ends, when it is
	// handed back at once, or until it is lost (this node cut off from the
	// store for longer than the lead outlives a dead node): lost is closed
	// then, and also after ctx ends. Work done for the lead stops when lost
	// closes; another node may take over from then on. An error other than
	// ctx's is the store's (store.ErrUnavailable): try again later.
	Campaign(ctx context.Context) (lost <-chan struct{}, err error)
}
