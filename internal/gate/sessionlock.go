package gate

import (
	"context"
	"fmt"
	"slices"
	"sync"

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
}

type sessionLock struct {
	held    chan struct{} // holds a token while the session is locked
	waiters int           // lockers holding or waiting for it
}

// NewSessionLocks returns locks to share among the gates of one store, and
// across configuration reloads.
func NewSessionLocks() *SessionLocks {
	return &SessionLocks{m: map[string]*sessionLock{}}
}

// lock takes the locks of sessions, in one order whatever the caller's, so
// that two lockers of overlapping sets cannot wait for each other. It
// gives up when ctx ends.
func (l *SessionLocks) lock(ctx context.Context, sessions []string) (unlock func(), err error) {
	keys := slices.Compact(slices.Sorted(slices.Values(sessions)))
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "" })
	var held []string
	unlock = func() {
		for _, k := range held {
			l.release(k)
		}
	}
	for _, k := range keys {
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
// most lenient server splits them, and ;jsessionid= path parameters.
func (g *Gate) namedSessions(r *Request) []string {
	var out []string
	values, _ := session.SessionCookies(r.Header, g.login.Cookie)
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return append(out, session.PathSessions(r.Path())...)
}

// LockSessions takes the locks of every bank session r names, for a
// confirmation: from before the customer is identified by their session
// until the release has the bank's answer, no login can switch the
// session. The refusal, when the client gave up waiting, says the
// operation was not carried out. With customers known from headers there
// is no bank session to lock.
func (g *Gate) LockSessions(ctx context.Context, r *Request) (unlock func(), ref *Refusal) {
	if g.login == nil {
		return func() {}, nil
	}
	unlock, err := g.locks.lock(ctx, g.namedSessions(r))
	if err != nil {
		return nil, Refuse(UpstreamNotSent, fmt.Errorf("otpgate: gave up waiting for a login on the same bank session: %w", err))
	}
	return unlock, nil
}
