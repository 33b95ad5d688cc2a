// Package gate is the gateway's request flow, without Caddy: what a
// protected request becomes (held for a code, passed through, refused),
// what confirming, cancelling and releasing a held operation do, the
// gateway's own built-in operations, and how the bank's login exchange
// binds customers to sessions.
//
// It works on plain views of requests (Request) and answers with plain
// results and one refusal type (Refusal), whose HTTP status comes from one
// table. The Caddy module adapts HTTP to it and writes the answers; the
// decisions are here, where they are tested without a server.
//
// Every decision fails closed: an unknown customer, a store error, an
// operation whose action is unknown, a login the gateway cannot read as the
// bank does — each is refused, never let through.
package gate

import (
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
)

// Gate runs the flow over one store. Its fields are set once, before use.
type Gate struct {
	store      store.Store
	tokens     *token.Manager
	challenges *challenge.Manager
	sessions   *session.Manager
	login      *session.LoginForm
	log        *zap.Logger
	obs        Observer
	locks      *SessionLocks
}

// New returns a Gate over the managers of one store. login describes the
// bank's login exchange, nil when customers are known from values set in
// front of the gateway (HeaderCustomer). log may be nil.
func New(s store.Store, tokens *token.Manager, challenges *challenge.Manager, sessions *session.Manager, login *session.LoginForm, log *zap.Logger) *Gate {
	if log == nil {
		log = zap.NewNop()
	}
	return &Gate{store: s, tokens: tokens, challenges: challenges, sessions: sessions, login: login, log: log, obs: nopObserver{},
		locks: NewSessionLocks(nil)}
}

// Customer is a known customer and the session they act in.
type Customer struct {
	Service, User string
	// Session is the handle held operations are bound to: the login's ID,
	// which stays the same when the bank rotates the session cookie.
	Session string
}

func (c *Customer) tokenUser() token.User { return token.User{Service: c.Service, ID: c.User} }

// Request is what the flow reads of an HTTP request.
type Request struct {
	Method string
	// URI is the escaped path and query as received, as the bank will get
	// them (http.Request.URL.RequestURI()).
	URI  string
	Host string
	// Header holds the request headers, Cookie among them.
	Header http.Header
	// Body is the whole body when the caller has read it.
	Body []byte
	// HasBody says the request may carry a body: a Content-Length other
	// than 0, or chunked.
	HasBody bool
	// ClientIP is the client's address as Caddy determined it (honouring
	// trusted_proxies), for the audit trail.
	ClientIP string
}

// Path is the escaped path of r.URI.
func (r *Request) Path() string {
	p, _, _ := strings.Cut(r.URI, "?")
	return p
}

// RawQuery is the query of r.URI, without "?".
func (r *Request) RawQuery() string {
	_, q, _ := strings.Cut(r.URI, "?")
	return q
}

// Action is what confirming a held operation does. It is stored with the
// operation (challenge.Operation.Action); the zero value, an operation of
// no known action, is never released.
type Action string

// Actions of held operations.
const (
	// Forward releases the stored request to the bank.
	Forward Action = "forward"
	// Revoke revokes the customer's token: the gateway's own
	// token_management operation, which never reaches the bank.
	Revoke Action = "revoke_token"
)

// ActionOf is the action of op; "" when it has none that the gateway knows.
func ActionOf(op *challenge.Operation) Action {
	switch a := Action(op.Action); a {
	case Forward, Revoke:
		return a
	}
	return ""
}
