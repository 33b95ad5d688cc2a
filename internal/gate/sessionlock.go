package gate

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/session"
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
// for each other on the same session. The locks are those of one process;
// gateways sharing a store (etcd) do not wait for each other's.
type SessionLocks struct {
	mu sync.Mutex
	m  map[string]*sessionLock
	// fences hold logins off sessions until a time: those of a release the
	// bank may still be carrying out (SessionHold.HoldOffLogins).
	fences map[string]time.Time
}

type sessionLock struct {
	held    chan struct{} // holds a token while the session is locked
	waiters int           // lockers holding or waiting for it
}

// NewSessionLocks returns locks to share among the gates of one store, and
// across configuration reloads.
func NewSessionLocks() *SessionLocks {
	return &SessionLocks{m: map[string]*sessionLock{}, fences: map[string]time.Time{}}
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
	for _, k := range keys(sessions) {
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
	return unlock, nil
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
		wait := time.Until(l.fencedUntil(sessions))
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

// fencedUntil is when the last fence of the sessions passes.
func (l *SessionLocks) fencedUntil(sessions []string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var until time.Time
	for _, k := range keys(sessions) {
		if f := l.fences[k]; f.After(until) {
			until = f
		}
	}
	return until
}

// fence holds logins off sessions for d, and forgets fences that passed.
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
func (h *SessionHold) HoldOffLogins(d time.Duration) {
	if h.locks != nil {
		h.locks.fence(h.sessions, d)
	}
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
	if err != nil {
		return nil, Refuse(UpstreamNotSent, fmt.Errorf("otpgate: gave up waiting for a login on the same bank session: %w", err))
	}
	return &SessionHold{locks: g.locks, sessions: sessions, unlock: unlock}, nil
}
