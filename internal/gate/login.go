package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
)

// HeaderCustomer is the customer named by values set in front of the
// gateway (a TLS client certificate, forward_auth): the caller has checked
// that the client could not set them. Their session is the identity
// itself, so held operations are bound to the customer.
func HeaderCustomer(service, user string) *Customer {
	return &Customer{Service: service, User: user, Session: session.Hash("header\x00" + service + "\x00" + user)}
}

// LoginCustomer is the customer whose bank session r carries, nil when it
// names none the gateway bound, or more than one (see sessionCookie).
func (g *Gate) LoginCustomer(ctx context.Context, r *Request) (*Customer, error) {
	value, ok := g.sessionCookie(r)
	if !ok {
		return nil, nil
	}
	b, found, err := g.sessions.Lookup(ctx, value)
	if err != nil || !found {
		return nil, err
	}
	return &Customer{Service: b.Service, User: b.User, Session: b.ID}, nil
}

// RedactSessionIDs is challenge.RedactSessionIDs with the bank's session
// cookie name: uri fit for a log.
func (g *Gate) RedactSessionIDs(uri string) string {
	return challenge.RedactSessionIDs(uri, g.cookieName())
}

// cookieName is the bank's session cookie name, "" with customers known
// from headers.
func (g *Gate) cookieName() string {
	if g.login == nil {
		return ""
	}
	return g.login.Cookie
}

// sessionCookie returns the session cookie's value when it is the only
// session r names. Two session cookies, or a cookie together with a
// ;jsessionid= in the path at any depth of percent-encoding, could let the
// gateway identify one customer while the bank acts for another (a lenient
// bank decodes "%253Bjsessionid%253D" until it reads ";jsessionid=" and,
// when the cookie's session has ended there, acts for the session named in
// the path), so they count as no session.
func (g *Gate) sessionCookie(r *Request) (string, bool) {
	if g.login == nil {
		return "", false
	}
	// Counted as the most lenient server splits the Cookie lines: exactly
	// one session cookie, and a plain one, or the bank may read another.
	values, one := session.SessionCookies(r.Header, g.login.Cookie)
	if !one {
		return "", false
	}
	if session.NamesSessionInPath(r.Path(), g.login.Cookie) {
		return "", false
	}
	return values[0], true
}

// LoginWatch follows a request that may log a customer in, out, or into
// another session, to the bank's answer (session.LoginForm decides).
type LoginWatch struct {
	g        *Gate
	watch    session.Watch
	clientIP string
	// dropped: Forwarding already ended the sessions the request names,
	// which are all that Answered would drop for it.
	dropped bool
	// unlock frees the sessions Forwarding locked, nil if none.
	unlock func()
}

// WatchLogin inspects r, a request the gateway passes to the bank, for what
// it may do to the bindings of sessions to customers. It returns nil when
// there is nothing to watch: r names no session and is not at the login
// path under any reading. readBody is called only when the body is needed,
// and must return it whole or at least session.MaxLoginBody+1 bytes of it.
// A login body the gateway cannot read as the bank does is refused
// (login_unreadable): passed on unwatched, it could bind a session to
// another customer than the bank logs in.
func (g *Gate) WatchLogin(r *Request, readBody func() ([]byte, error)) (*LoginWatch, *Refusal) {
	if g.login == nil {
		return nil, nil
	}
	path := r.Path()
	view := &session.Request{Path: path, RawQuery: r.RawQuery(), Header: r.Header, HasBody: r.HasBody}
	view.Session, _ = g.sessionCookie(r)
	view.Sessions = g.namedSessions(r)
	if len(view.Sessions) == 0 && !g.login.Path.Matches(path) {
		return nil, nil
	}
	watch, err := g.login.Inspect(view, readBody)
	if ue := (*session.UnreadableError)(nil); errors.As(err, &ue) {
		g.log.Info("login refused: its body could not be read as the bank reads it", zap.String("reason", ue.Reason),
			zap.String("method", r.Method), zap.String("path", challenge.RedactSessionIDs(path, g.cookieName())))
		return nil, Refuse(LoginUnreadable, err)
	}
	if err != nil {
		return nil, Refuse(BadRequest, err)
	}
	return &LoginWatch{g: g, watch: watch, clientIP: r.ClientIP}, nil
}

// Forwarding drops, before the request goes to the bank, the bindings a
// login-shaped request will drop anyway (session.Watch.DropFirst). It
// first waits for releases into those sessions to have the bank's answer
// (SessionLocks), and holds them off until Done: a release must not reach
// the bank after a login that switched its session. The login is refused,
// not sent, when the client gave up waiting, or when a binding could not
// be ended (the store failed): forwarded, it could leave the session bound
// to one customer while the bank logs in another.
func (w *LoginWatch) Forwarding(ctx context.Context) (ref *Refusal) {
	first := w.watch.DropFirst()
	if len(first) == 0 {
		return nil
	}
	if len(keys(first)) > MaxNamedSessions {
		return Refuse(BadRequest, errTooManySessions)
	}
	x, err := w.g.locks.lockForLogin(ctx, first)
	if errors.Is(err, store.ErrUnavailable) {
		return w.g.Refuse(StoreUnavailable, fmt.Errorf("otpgate: locking the bank session in the store: %w", err))
	}
	if err != nil {
		return Refuse(UpstreamNotSent, fmt.Errorf("otpgate: gave up waiting for a release into the same bank session: %w", err))
	}
	w.unlock = func() { x.unlock(0) }
	defer func() {
		if ref != nil {
			w.Done()
		}
	}()
	for _, v := range first {
		if err := w.g.sessions.End(context.WithoutCancel(ctx), v, "a login-shaped request named this session", w.clientIP); err != nil {
			w.g.log.Error("dropping session binding before a login; the login is refused", zap.Error(err))
			return w.g.Refuse(StoreUnavailable, err)
		}
	}
	w.dropped = true
	return nil
}

// Done frees the sessions Forwarding locked, once the bank's answer has
// been carried out (Answered) or there will be none.
func (w *LoginWatch) Done() {
	if w.unlock != nil {
		w.unlock()
		w.unlock = nil
	}
}

// Answered carries out what the bank's answer does to the bindings: status
// and header are the answer's, 0 and nil when the bank gave none (it may
// still have logged someone in). It changes the bindings whether or not
// the customer's connection stays open. Cookie values and passwords are
// never logged.
func (w *LoginWatch) Answered(ctx context.Context, status int, header http.Header) session.Decision {
	g := w.g
	d := g.login.Decide(w.watch, session.Response{Status: status, Header: header})
	ctx = context.WithoutCancel(ctx)
	logErr := func(err error, what string) {
		if err != nil {
			g.log.Error(what, zap.Error(err))
		}
	}
	if !w.dropped {
		for _, v := range d.Drop {
			logErr(g.sessions.End(ctx, v, d.Reason, w.clientIP), "dropping session binding")
		}
	}
	switch d.Action {
	case session.Bind:
		if err := g.sessions.Bind(ctx, d.New, d.Service, d.User, w.clientIP); err != nil {
			g.log.Error("binding login session; the customer's protected operations will be refused",
				zap.String("service", d.Service), zap.String("user", d.User), zap.Error(err))
		}
	case session.Rotate:
		logErr(g.sessions.Rotate(ctx, d.Old, d.New), "following session rotation")
	case session.Drop:
		g.log.Info("session binding dropped", zap.String("reason", d.Reason))
	case session.Nothing:
		if d.Reason != "" {
			g.log.Info("session not bound", zap.String("reason", d.Reason))
		}
	}
	return d
}

// TokenFirst reports whether the customer a login just bound (d, from
// Answered) must start or renew a token before any protected operation:
// their service requires OTP and they have no active token (none yet,
// revoked, reset, or expired). The gateway then answers the login with the
// token page rather than the bank's menu, as the service it reproduces
// does (所定の利用申込後、初回ログイン時に STEP 1-3). It is false for any
// other decision, for a locked customer (the token page offers them
// nothing to do) and when the store cannot say: the login then goes on
// as the bank answered it, and protected operations still need the token.
func (g *Gate) TokenFirst(ctx context.Context, d session.Decision) bool {
	if d.Action != session.Bind {
		return false
	}
	var req token.Requirement
	err := g.store.View(context.WithoutCancel(ctx), func(tx store.Tx) error {
		var err error
		req, err = g.tokens.RequirementInTx(tx, token.User{Service: d.Service, ID: d.User}, g.tokens.Now())
		return err
	})
	if err != nil {
		g.log.Error("reading the token state of a customer who just logged in", zap.Error(err))
		return false
	}
	return req == token.NeedEnrolment || req == token.NeedRenewal
}
