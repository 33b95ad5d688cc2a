package outbox

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Sender drains an outbox. Run one per store and process (on several nodes,
// one per store is enough and the claims make more harmless). Set its
// fields before the first Run or DrainOnce.
type Sender struct {
	// Store is the store the notices are queued in.
	Store store.Store
	// Deliver sends one notice. Its context ends at half the Lease. An error
	// wrapped with Permanent gives the notice up at once (a message that
	// cannot be composed, an address the relay refuses for good); any other
	// is retried.
	Deliver func(ctx context.Context, n Notice) error
	// Now is the clock; tests replace it. Default: time.Now.
	Now func() time.Time
	// Backoff is the wait before retry number attempt (1 after the first
	// failure). Default: Exponential(30*time.Second, time.Hour).
	Backoff func(attempt int) time.Duration
	// MaxAttempts is how many deliveries are tried before the notice is
	// moved to the dead letters. Default: 30, which with the default
	// back-off spans 12 to 23 hours, so a relay down overnight loses no mail.
	MaxAttempts int
	// Lease is how long a claim keeps other senders off a notice; it must
	// outlast Deliver, which gets half of it. Default: 2 minutes.
	Lease time.Duration
	// Poll is how often Run looks for due notices when nothing kicks it:
	// retries falling due, and notices queued by other processes. Default: 10s.
	Poll time.Duration
	// Batch is how many notices one drain round takes. Default: 32.
	Batch int
	// OnFailure, if set, is told of every failed delivery; e.DeadAt is set
	// when the notice was given up on.
	OnFailure func(e Entry, err error)
	// OnError, if set, is told of the store's failures in Run.
	OnError func(err error)

	kick               chan struct{}
	sent, failed, dead atomic.Uint64
}

// NewSender returns a Sender with the defaults filled in.
func NewSender(st store.Store, deliver func(ctx context.Context, n Notice) error) *Sender {
	return &Sender{
		Store:       st,
		Deliver:     deliver,
		Now:         time.Now,
		Backoff:     Exponential(30*time.Second, time.Hour),
		MaxAttempts: 30,
		Lease:       2 * time.Minute,
		Poll:        10 * time.Second,
		Batch:       32,
		kick:        make(chan struct{}, 1),
	}
}

// Exponential returns a back-off that waits between half and all of
// base·2^(attempt-1), capped at ceiling: doubling, so a relay that is down
// is not hammered, and random within that, so the notices that failed
// together in an outage are not all retried in the same second.
func Exponential(base, ceiling time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		d := min(base, ceiling)
		for i := 1; i < attempt && d < ceiling; i++ {
			// Compared before doubling, which could overflow.
			if d > ceiling/2 {
				d = ceiling
			} else {
				d *= 2
			}
		}
		d = max(d, 0)
		return d - rand.N(d/2+1)
	}
}

// permanent marks an error that retrying will not cure.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying will not cure: Deliver returns
// it to have the notice moved to the dead letters at once.
func Permanent(err error) error { return permanent{err} }

// Stats counts what this Sender did since it was made, for metrics.
type Stats struct {
	Sent   uint64 // notices delivered
	Failed uint64 // deliveries that failed and will be retried
	Dead   uint64 // notices given up on
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Failed: s.failed.Load(), Dead: s.dead.Load()}
}

// Kick wakes Run to send what was just queued. Call it after the
// transaction that enqueued commits; it never blocks, and kicks that come
// while Run is busy are folded into one more round.
func (s *Sender) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run sends due notices until ctx ends: at once, whenever kicked, and every
// Poll. A delivery that ctx interrupts is given back for the next sender
// to send at once.
func (s *Sender) Run(ctx context.Context) {
	t := time.NewTimer(s.Poll)
	defer t.Stop()
	for {
		s.drain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Reset(s.Poll)
	}
}

// drain runs rounds while they come back full. Every round removes the
// notices it handles from what is due (sent, dead, or waiting at least a
// second for a retry), so the rounds end once the queue is worked through.
func (s *Sender) drain(ctx context.Context) {
	for ctx.Err() == nil {
		sent, failed, err := s.DrainOnce(ctx, s.Batch)
		if err != nil {
			if ctx.Err() == nil && s.OnError != nil {
				s.OnError(err)
			}
			return
		}
		if sent+failed < s.Batch {
			return
		}
	}
}

// DrainOnce tries to deliver up to limit due notices, oldest first, and
// returns how many were sent and how many failed (to be retried or given up
// on). Notices claimed by another sender are left to it. err is the store's
// failure, or ctx's.
func (s *Sender) DrainOnce(ctx context.Context, limit int) (sent, failed int, err error) {
	ids, err := s.due(ctx, limit)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return sent, failed, err
		}
		ok, tried, err := s.send(ctx, id)
		switch {
		case ok:
			sent++
		case tried:
			failed++
		}
		if err != nil {
			return sent, failed, err
		}
	}
	return sent, failed, nil
}

// due lists up to limit due notices in key order.
func (s *Sender) due(ctx context.Context, limit int) ([]string, error) {
	now := s.Now()
	var ids []string
	err := scan(ctx, s.Store, queuedPrefix, func(id string, v []byte) error {
		if len(ids) >= limit {
			return errStop
		}
		var r record
		// A damaged record is listed so that the claim moves it to the
		// dead letters instead of it being skipped on every round.
		if json.Unmarshal(v, &r) != nil || r.due(now) {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// send claims, delivers and settles one notice. ok: delivered; tried: a
// delivery was attempted (or the record was damaged) and failed.
func (s *Sender) send(ctx context.Context, id string) (ok, tried bool, err error) {
	r, claim, err := s.claim(ctx, id)
	if err != nil || r == nil {
		return false, false, err
	}
	if claim == "" {
		// Damaged and moved to the dead letters by claim.
		return false, true, nil
	}
	dctx, cancel := context.WithTimeout(ctx, s.Lease/2)
	derr := s.Deliver(dctx, r.Notice)
	cancel()
	// Settled even when ctx has ended: a delivered notice recorded as sent
	// is not sent again, and an interrupted one is handed back at once.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Lease/2)
	defer cancel()
	e, err := s.settle(sctx, id, r, claim, derr, ctx.Err() != nil)
	switch {
	case derr == nil:
		s.sent.Add(1)
		return true, false, err
	case !e.DeadAt.IsZero():
		s.dead.Add(1)
	default:
		s.failed.Add(1)
	}
	if s.OnFailure != nil {
		s.OnFailure(e, derr)
	}
	return false, true, err
}

// claim takes a due notice for this sender for one Lease and counts the
// attempt (counted now, so a notice that crashes the process is still given
// up on in the end). It returns nil if the notice is gone or not due any
// more (another sender took it), and an empty claim for a damaged record,
// which it moves to the dead letters.
func (s *Sender) claim(ctx context.Context, id string) (*record, string, error) {
	claim := crand.Text()
	var got *record
	var damaged Entry
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		got, damaged = nil, Entry{}
		now := s.Now()
		r, err := load(tx, queuedPrefix+id)
		if errors.Is(err, errDamaged) {
			dead := record{LastError: err.Error(), DeadAt: now}
			damaged = dead.entry(id)
			got = &dead
			return bury(tx, id, &dead)
		}
		if err != nil || r == nil || !r.due(now) {
			return err
		}
		r.Attempts++
		r.Claim, r.LeaseUntil = claim, now.Add(s.Lease)
		got = r
		return save(tx, queuedPrefix+id, r)
	})
	if err != nil || got == nil {
		return nil, "", err
	}
	if !damaged.DeadAt.IsZero() {
		s.dead.Add(1)
		if s.OnFailure != nil {
			s.OnFailure(damaged, errors.New(damaged.LastError))
		}
		return got, "", nil
	}
	return got, claim, nil
}

// settle records a delivery's outcome if the claim still holds: a sent
// notice is deleted; a failed one waits for its retry, or is moved to the
// dead letters after MaxAttempts or a permanent error; one interrupted by
// shutdown is handed back due at once. A claim lost to another sender (the
// lease ran out) is left alone: that sender settles it.
func (s *Sender) settle(ctx context.Context, id string, claimed *record, claim string, derr error, interrupted bool) (Entry, error) {
	var e Entry
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		// What is reported when the claim was lost: the notice as claimed.
		e = claimed.entry(id)
		if derr != nil {
			e.LastError = errorText(derr)
		}
		now := s.Now()
		r, err := load(tx, queuedPrefix+id)
		if err != nil && !errors.Is(err, errDamaged) {
			return err
		}
		if r == nil || r.Claim != claim {
			// Not ours any more; whoever holds it now settles it.
			return nil
		}
		if derr == nil {
			return tx.Delete(store.Outbox, queuedPrefix+id)
		}
		r.Claim, r.LeaseUntil, r.LastError = "", time.Time{}, errorText(derr)
		var p permanent
		switch {
		case interrupted:
			r.NextAt = now
		case errors.As(derr, &p) || r.Attempts >= s.MaxAttempts:
			r.DeadAt = now
			e = r.entry(id)
			return bury(tx, id, r)
		default:
			r.NextAt = now.Add(max(s.Backoff(r.Attempts), time.Second))
		}
		e = r.entry(id)
		return save(tx, queuedPrefix+id, r)
	})
	return e, err
}

// bury moves a notice from the queue to the dead letters.
func bury(tx store.Tx, id string, r *record) error {
	if err := tx.Delete(store.Outbox, queuedPrefix+id); err != nil {
		return err
	}
	return save(tx, deadPrefix+id, r)
}

// errorText keeps a stored error short: a relay's answer can be long, and
// the dead letters are read by people.
func errorText(err error) string {
	const limit = 300
	msg := err.Error()
	if len(msg) > limit {
		msg = strings.ToValidUTF8(msg[:limit], "") + "…"
	}
	return msg
}
