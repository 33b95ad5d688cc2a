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

// MaxNamedSessions is the most bank sessions a login or a confirmation
// may name (cookies and path parameters): a browser names one. Each is a
// lock, and on a shared store a key written and deleted in etcd, so a
// request naming hundreds is refused rather than locked.
const MaxNamedSessions = 8

var errTooManySessions = fmt.Errorf("otpgate: the request names more than %d bank sessions (session cookies or ;jsessionid= parameters); send the one the bank set", MaxNamedSessions)

// ProvisionalFence is how long a confirmation's sessions are fenced in a
// shared store while it holds their locks, should its gateway be cut off
// or stop before it frees them: longer than the release (a minute) and the
// fence of an unknown outcome after it (two). A lock freed with a known
// outcome takes it away in the same write.
const ProvisionalFence = 4 * time.Minute

// sharedWait bounds the read of fences in a shared store.
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

// locked is the locks one lock call took.
type locked struct {
	l      *SessionLocks
	keys   []string
	held   []string // the keys whose process locks are held
	names  []string // the keys' digests, sorted: their names in a shared store
	shared store.Held
}

// unlock frees the locks; with fence above zero, logins naming the
// sessions are held off for that long, here and on every gateway of a
// shared store, from before anyone can take the locks.
func (x *locked) unlock(fence time.Duration) {
	if fence > 0 {
		x.l.fence(x.keys, fence)
	}
	if x.shared != nil {
		// Freed off the request's path (a write to etcd, retried until
		// it is written): a waiting login waits that much longer, never
		// less.
		x.shared.Unlock(fence)
	}
	for _, k := range x.held {
		x.l.release(k)
	}
	x.held = nil
}

// validFor says whether the locks hold for at least d more even if this
// gateway were cut off from a shared store from now on.
func (x *locked) validFor(d time.Duration) bool {
	return x.shared == nil || time.Until(x.shared.ValidUntil()) >= d
}

// lock takes the locks of sessions, in one order whatever the caller's, so
// that two lockers of overlapping sets cannot wait for each other: the
// process's own, then, on a shared store, the store's. It gives up when
// ctx ends.
func (l *SessionLocks) lock(ctx context.Context, sessions []string) (*locked, error) {
	return l.lockFenced(ctx, sessions, 0)
}

// lockProvisionallyFenced is lock for a confirmation: on a shared store
// its sessions are fenced for ProvisionalFence while it holds them.
func (l *SessionLocks) lockProvisionallyFenced(ctx context.Context, sessions []string) (*locked, error) {
	return l.lockFenced(ctx, sessions, ProvisionalFence)
}

func (l *SessionLocks) lockFenced(ctx context.Context, sessions []string, provisional time.Duration) (*locked, error) {
	x := &locked{l: l, keys: keys(sessions)}
	for _, k := range x.keys {
		e := l.enter(k)
		select {
		case e.held <- struct{}{}:
			x.held = append(x.held, k)
		case <-ctx.Done():
			l.leave(k)
			x.unlock(0)
			return nil, ctx.Err()
		}
	}
	if l.shared == nil || len(x.keys) == 0 {
		return x, nil
	}
	// Digests sort differently from the IDs, and every gateway must take
	// them in one order.
	x.names = digests(x.keys)
	slices.Sort(x.names)
	shared, err := l.shared.Lock(ctx, x.names, provisional)
	if err != nil {
		x.unlock(0)
		return nil, err
	}
	x.shared = shared
	return x, nil
}

// lockForLogin is lock for a login that also waits out the fences of the
// sessions. They are read once the locks are held: a release sets its
// fence before it unlocks, so a login that was waiting for the release's
// lock finds the fence too.
func (l *SessionLocks) lockForLogin(ctx context.Context, sessions []string) (*locked, error) {
	for {
		x, err := l.lock(ctx, sessions)
		if err != nil {
			return nil, err
		}
		until, err := x.fencedUntil(ctx)
		if err != nil {
			x.unlock(0)
			return nil, err
		}
		wait := time.Until(until)
		if wait <= 0 {
			return x, nil
		}
		x.unlock(0)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// fencedUntil is when the last fence of the locked sessions passes, here
// or, on a shared store, on any gateway.
func (x *locked) fencedUntil(ctx context.Context) (time.Time, error) {
	l := x.l
	l.mu.Lock()
	var until time.Time
	for _, k := range x.keys {
		if f := l.fences[k]; f.After(until) {
			until = f
		}
	}
	l.mu.Unlock()
	if x.shared == nil {
		return until, nil
	}
	ctx, cancel := context.WithTimeout(ctx, sharedWait)
	defer cancel()
	shared, err := l.shared.FencedUntil(ctx, x.names)
	if err != nil {
		return time.Time{}, err
	}
	if shared.After(until) {
		until = shared
	}
	return until, nil
}

// fence holds logins off sessions for d in this process, and forgets
// fences that passed (a shared store's fences are written with its
// unlock).
func (l *SessionLocks) fence(sessions []string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	locked *locked
	fence  time.Duration
}

// Unlock ends the hold.
func (h *SessionHold) Unlock() {
	if h.locked != nil {
		h.locked.unlock(h.fence)
		h.locked = nil
	}
}

// HoldOffLogins keeps logins naming the held sessions waiting for d more
// after Unlock, for a release the bank may still be carrying out (its
// answer did not come in time): a login that switched the session
// meanwhile would have the operation booked to another customer. Other
// confirmations do not wait.
func (h *SessionHold) HoldOffLogins(d time.Duration) { h.fence = max(h.fence, d) }

// ValidFor says whether the hold lasts at least d more even if this
// gateway were cut off from a shared store from now on, as a release needs
// before it starts: on another gateway a login could take the session once
// the hold passed.
func (h *SessionHold) ValidFor(d time.Duration) bool {
	return h.locked == nil || h.locked.validFor(d)
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
	if len(keys(sessions)) > MaxNamedSessions {
		return nil, Refuse(BadRequest, errTooManySessions)
	}
	x, err := g.locks.lockProvisionallyFenced(ctx, sessions)
	if errors.Is(err, store.ErrUnavailable) {
		return nil, g.Refuse(StoreUnavailable, fmt.Errorf("otpgate: locking the bank session in the store: %w", err))
	}
	if err != nil {
		return nil, Refuse(UpstreamNotSent, fmt.Errorf("otpgate: gave up waiting for a login on the same bank session: %w", err))
	}
	return &SessionHold{locked: x}, nil
}
