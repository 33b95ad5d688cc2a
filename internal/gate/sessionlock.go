package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store"
)

// SessionLocks serialises, per bank session, the two exchanges that must
// never overlap on one: a confirmation with its release into the session,
// and a login-shaped request naming it. A bank that keeps the session ID
// at login switches the session to whoever logs in; a release checked
// against the session's old binding and still on its way to the bank
// would then run as the customer who just logged in, with another
// customer's code. Serialised, the login waits for the release's answer,
// and a release that waited for a login finds the binding the login
// dropped, and is refused.
//
// Ordinary requests take no lock: only logins and releases wait, and only
// for each other on the same session. On a store that several gateways
// share (store.Locker, etcd) the locks and fences are taken in the store
// too, after the process's own, so that a login on one gateway waits for a
// release into its session on another; the store sees digests of the
// session IDs, never the IDs.
type SessionLocks struct {
	mu sync.Mutex
	m  map[string]*sessionLock
	// fences hold logins off sessions until a time: those of a release the
	// bank may still be carrying out (SessionHold.HoldOffLogins).
	fences map[string]time.Time
	// shared is the store's locker, nil on a store of one node.
	shared store.Locker
}

// SharedHold is how long at least a lock taken in a shared store lasts
// when its gateway does not free it (it died, or lost the store): longer
// than a confirmation takes with its release's answer, which is bounded to
// a minute. The store frees it within a minute or two more (etcd: with its
// lease class).
const SharedHold = 3 * time.Minute

// sharedWait bounds a fence's write and read in a shared store.
const sharedWait = 10 * time.Second

type sessionLock struct {
	held    chan struct{} // holds a token while the session is locked
	waiters int           // lockers holding or waiting for it
}

// NewSessionLocks returns locks to share among the gates of one store, and
// across configuration reloads. shared is the store's locker when several
// gateways share the store (etcd), else nil.
func NewSessionLocks(shared store.Locker) *SessionLocks {
	return &SessionLocks{m: map[string]*sessionLock{}, fences: map[string]time.Time{}, shared: shared}
}

// digests name sessions in a shared store: a session ID is a secret.
func digests(sessions []string) []string {
	out := make([]string, len(sessions))
	for i, s := range sessions {
		sum := sha256.Sum256([]byte(s))
		out[i] = hex.EncodeToString(sum[:16])
	}
	return out
}

// keys are the distinct non-empty sessions, in one order.
func keys(sessions []string) []string {
	k := slices.Compact(slices.Sorted(slices.Values(sessions)))
	return slices.DeleteFunc(k, func(s string) bool { return s == "" })
}

// lock takes the locks of sessions, in one order whatever the caller's, so
// that two lockers of overlapping sets cannot wait for each other. It
// gives up when ctx ends.
func (l *SessionLocks) lock(ctx context.Context, sessions []string) (unlock func(), err error) {
	var held []string
	unlock = func() {
		for _, k := range held {
			l.release(k)
		}
	}
	ks := keys(sessions)
	for _, k := range ks {
		e := l.enter(k)
		select {
		case e.held <- struct{}{}:
			held = append(held, k)
		case <-ctx.Done():
			l.leave(k)
			unlock()
			return nil, ctx.Err()
		}
	}
	if l.shared == nil || len(ks) == 0 {
		return unlock, nil
	}
	// Digests sort differently from the IDs, and every gateway must take
	// them in one order.
	names := digests(ks)
	slices.Sort(names)
	unlockHere := unlock
	unlockShared, err := l.shared.Lock(ctx, names, SharedHold)
	if err != nil {
		unlockHere()
		return nil, err
	}
	return func() {
		// Freed in the store off the request's path (a write to etcd): a
		// login waiting for it waits that much longer, never less.
		go unlockShared()
		unlockHere()
	}, nil
}

// lockForLogin is lock for a login that also waits out the fences of the
// sessions. They are read once the locks are held: a release sets its
// fence before it unlocks, so a login that was waiting for the release's
// lock finds the fence too.
func (l *SessionLocks) lockForLogin(ctx context.Context, sessions []string) (unlock func(), err error) {
	for {
		unlock, err := l.lock(ctx, sessions)
		if err != nil {
			return nil, err
		}
		until, err := l.fencedUntil(ctx, sessions)
		if err != nil {
			unlock()
			return nil, err
		}
		wait := time.Until(until)
		if wait <= 0 {
			return unlock, nil
		}
		unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// fencedUntil is when the last fence of the sessions passes, here or, on
// a shared store, on any gateway.
func (l *SessionLocks) fencedUntil(ctx context.Context, sessions []string) (time.Time, error) {
	l.mu.Lock()
	var until time.Time
	for _, k := range keys(sessions) {
		if f := l.fences[k]; f.After(until) {
			until = f
		}
	}
	l.mu.Unlock()
	if l.shared == nil || len(sessions) == 0 {
		return until, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedWait)
	defer cancel()
	shared, err := l.shared.FencedUntil(ctx, digests(keys(sessions)))
	if err != nil {
		return time.Time{}, err
	}
	if shared.After(until) {
		until = shared
	}
	return until, nil
}

// fence holds logins off sessions for d, and forgets fences that passed.
// On a shared store the fence is written there too; an error says it
// could not be, and logins on other gateways are not held off.
func (l *SessionLocks) fence(sessions []string, d time.Duration) error {
	l.mu.Lock()
	now := time.Now()
	for k, f := range l.fences {
		if !f.After(now) {
			delete(l.fences, k)
		}
	}
	for _, k := range keys(sessions) {
		if until := now.Add(d); until.After(l.fences[k]) {
			l.fences[k] = until
		}
	}
	l.mu.Unlock()
	if l.shared == nil || len(keys(sessions)) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedWait)
	defer cancel()
	return l.shared.Fence(ctx, digests(keys(sessions)), d)
}

func (l *SessionLocks) enter(k string) *sessionLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[k]
	if e == nil {
		e = &sessionLock{held: make(chan struct{}, 1)}
		l.m[k] = e
	}
	e.waiters++
	return e
}

// leave forgets a locker that gave up before holding the lock.
func (l *SessionLocks) leave(k string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[k]; e != nil {
		if e.waiters--; e.waiters == 0 {
			delete(l.m, k)
		}
	}
}

// release frees the lock of k its locker holds.
func (l *SessionLocks) release(k string) {
	l.mu.Lock()
	e := l.m[k]
	l.mu.Unlock()
	<-e.held
	l.leave(k)
}

// SerialiseSessions makes g take its session locks from locks, shared with
// the other gates of its store.
func (g *Gate) SerialiseSessions(locks *SessionLocks) {
	g.locks = locks
}

// namedSessions are the bank sessions r names: its session cookies, as the
// most lenient server splits them, and ;jsessionid= (or ;<cookie>=) path
// parameters.
func (g *Gate) namedSessions(r *Request) []string {
	var out []string
	values, _ := session.SessionCookies(r.Header, g.login.Cookie)
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return append(out, session.PathSessions(r.Path(), g.login.Cookie)...)
}

// SessionHold is a confirmation's hold on the bank sessions it names.
type SessionHold struct {
	locks    *SessionLocks
	sessions []string
	unlock   func()
}

// Unlock ends the hold.
func (h *SessionHold) Unlock() {
	if h.unlock != nil {
		h.unlock()
		h.unlock = nil
	}
}

// HoldOffLogins keeps logins naming the held sessions waiting for d more
// after Unlock, for a release the bank may still be carrying out (its
// answer did not come in time): a login that switched the session
// meanwhile would have the operation booked to another customer. Other
// confirmations do not wait.
func (h *SessionHold) HoldOffLogins(d time.Duration) error {
	if h.locks == nil {
		return nil
	}
	return h.locks.fence(h.sessions, d)
}

// LockSessions takes the locks of every bank session r names, for a
// confirmation: from before the customer is identified by their session
// until the release has the bank's answer, no login can switch the
// session. The refusal, when the client gave up waiting, says the
// operation was not carried out. With customers known from headers there
// is no bank session to lock.
func (g *Gate) LockSessions(ctx context.Context, r *Request) (*SessionHold, *Refusal) {
	if g.login == nil {
		return &SessionHold{}, nil
	}
	sessions := g.namedSessions(r)
	unlock, err := g.locks.lock(ctx, sessions)
	if errors.Is(err, store.ErrUnavailable) {
		return nil, g.Refuse(StoreUnavailable, fmt.Errorf("otpgate: locking the bank session in the store: %w", err))
	}
	if err != nil {
		return nil, Refuse(UpstreamNotSent, fmt.Errorf("otpgate: gave up waiting for a login on the same bank session: %w", err))
	}
	return &SessionHold{locks: g.locks, sessions: sessions, unlock: unlock}, nil
}
