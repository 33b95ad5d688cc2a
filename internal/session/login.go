package session

// The login-watching decision, without Caddy: what a request may be, which
// customer it logs in as, and what its answer does to the bindings. It fails
// closed: a request that any reading could make a login is watched as one, an
// identity is bound only when it was read unambiguously, and a new session
// cookie never moves a binding when the request could have been a login.

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpgate/otpgate/policy"
)

// MaxLoginBody is the largest login body the gateway reads; a login form is a
// few hundred bytes.
const MaxLoginBody = 64 << 10

// LoginForm describes the bank's login exchange.
type LoginForm struct {
	// Path is the login page; Logout ends the session it is called with.
	Path, Logout *policy.FixedPath
	// ServiceField and UserField are the login form's fields.
	ServiceField, UserField string
	// Cookie is the bank's session cookie.
	Cookie string
	// SuccessStatus lists the statuses of a successful login; SuccessLocation,
	// if set, is the path its redirect starts with.
	SuccessStatus   []int
	SuccessLocation string
}

// Request is what the decision needs of a request.
type Request struct {
	// Path is the escaped path; RawQuery the query without "?".
	Path, RawQuery string
	// Header holds the request headers (Content-Type, Content-Encoding).
	Header http.Header
	// HasBody says the request may carry a body (a Content-Length other than
	// 0, or chunked).
	HasBody bool
	// Session is the session cookie's value when it is the only session the
	// request names; Sessions is every session value it names, in cookies and
	// in ";jsessionid=" path parameters.
	Session  string
	Sessions []string
}

// Shape is what a request may be, as far as logins are concerned.
type Shape int

const (
	// CannotBeLogin: not the login path under any reading, no login field
	// in the query, no body. Only here is a new session cookie a rotation.
	CannotBeLogin Shape = iota
	// MaybeLogin: a body the gateway did not read, outside the login path.
	// A new session cookie in its answer drops the binding.
	MaybeLogin
	// LoginPage: the login path with no login field and no body. It can
	// log nobody in; a new session cookie in its answer drops the binding.
	LoginPage
	// Login: the login path with a body or a login field in the query, or a
	// login field in the query anywhere. It drops every binding of the
	// sessions it names whatever the answer (a bank may log another customer
	// into the same session ID), and binds the new session only when it
	// read the identity unambiguously.
	Login
)

var shapeNames = [...]string{"cannot be a login", "may be a login", "login page", "login"}

func (s Shape) String() string { return shapeNames[s] }

// Watch is what the gateway learnt of a request before passing it on.
type Watch struct {
	Shape Shape
	// Service and User are the identity a Login read unambiguously at the
	// login path; empty otherwise, with the reason in Why.
	Service, User string
	Why           string

	logout            bool
	session           string
	sessions          []string
	bindable, atLogin bool
}

// UnreadableError refuses a login body the gateway cannot read exactly as
// the bank does. Reason names what was wrong, never a value.
type UnreadableError struct{ Reason string }

func (e *UnreadableError) Error() string {
	return "the login form could not be read unambiguously: " + e.Reason
}

func unreadable(format string, a ...any) error {
	return &UnreadableError{Reason: fmt.Sprintf(format, a...)}
}

// Inspect tells what r may be and, for a login at the login path, whom it
// logs in. readBody is called only when the body is needed, and must return
// it whole or, when it is larger, at least MaxLoginBody+1 bytes of it. The
// error is an *UnreadableError when the body cannot be read as the bank
// reads it: the request must then be refused, not passed on unwatched.
func (f *LoginForm) Inspect(r *Request, readBody func() ([]byte, error)) (Watch, error) {
	w := Watch{session: r.Session, sessions: r.Sessions}
	w.atLogin = f.Path.Matches(r.Path)
	w.logout = f.Logout != nil && f.Logout.Matches(r.Path)
	fields := f.queryNamesField(r.RawQuery)
	switch {
	case w.atLogin && (r.HasBody || fields):
		w.Shape = Login
	case w.atLogin:
		w.Shape = LoginPage
		return w, nil
	case fields:
		w.Shape, w.Why = Login, "login fields outside the login path"
		return w, nil
	case r.HasBody:
		w.Shape = MaybeLogin
		return w, nil
	default:
		w.Shape = CannotBeLogin
		return w, nil
	}
	var body []byte
	if r.HasBody {
		var err error
		if body, err = readBody(); err != nil {
			return w, err
		}
	}
	params, queryOK, err := readForm(r, body)
	if err != nil {
		return w, err
	}
	if !queryOK {
		w.Why = "the query has an invalid % escape"
	} else if w.Service, w.Why = pick(params, f.ServiceField, "service"); w.Why == "" {
		w.User, w.Why = pick(params, f.UserField, "user")
	}
	w.bindable = w.Why == ""
	if !w.bindable {
		w.Service, w.User = "", ""
	}
	return w, nil
}

// queryNamesField reports whether the query could carry the service or user
// field under any reading: decoded at any depth, in any letter case, with any
// punctuation (PHP reads "user.id" as "user_id"). A false positive only makes
// a login page count as a login.
func (f *LoginForm) queryNamesField(rawQuery string) bool {
	if rawQuery == "" {
		return false
	}
	q := skeleton(policy.Unescape(rawQuery))
	return strings.Contains(q, skeleton(f.ServiceField)) || strings.Contains(q, skeleton(f.UserField))
}

// skeleton keeps only the letters and digits of s, folded to lower case the
// way case-insensitive Java and .NET comparisons equate them.
func skeleton(s string) string {
	var b strings.Builder
	for _, r := range policy.FoldCase(s) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// formParam is one parameter, its name and value decoded to bytes.
type formParam struct{ name, value string }

// readForm reads the query and an application/x-www-form-urlencoded body the
// way a servlet's getParameter does: split on "&" and "=", then decode. The
// body is refused unless every reader splits and decodes it alike. queryOK
// is false if the query has an invalid escape.
func readForm(r *Request, body []byte) (params []formParam, queryOK bool, err error) {
	params, queryOK = splitForm(r.RawQuery)
	if !r.HasBody {
		return params, queryOK, nil
	}
	if len(body) > MaxLoginBody {
		return nil, false, unreadable("body over %d KiB", MaxLoginBody>>10)
	}
	for _, ce := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(ce), "identity") {
			return nil, false, unreadable("body has a Content-Encoding")
		}
	}
	cts := r.Header.Values("Content-Type")
	if len(body) == 0 && len(cts) == 0 {
		return params, queryOK, nil
	}
	switch len(cts) {
	case 0:
		return nil, false, unreadable("body without a Content-Type")
	case 1:
	default:
		return nil, false, unreadable("%d Content-Type headers", len(cts))
	}
	media, mp, err := mime.ParseMediaType(cts[0])
	if err != nil {
		return nil, false, unreadable("Content-Type does not parse")
	}
	if media != "application/x-www-form-urlencoded" {
		// multipart/form-data included: servlets and the gateway differ on
		// RFC 2231 names, preambles, part headers and duplicate parts.
		return nil, false, unreadable("body is %s, not application/x-www-form-urlencoded", media)
	}
	cs := strings.ToLower(mp["charset"])
	switch cs {
	case "", "utf-8", "us-ascii", "iso-8859-1":
	default:
		return nil, false, unreadable("charset %q is not UTF-8, US-ASCII or ISO-8859-1", cs)
	}
	for _, c := range body {
		// A browser percent-encodes everything else; a raw byte is read
		// differently by readers of different charsets.
		if c < 0x21 || c > 0x7e {
			return nil, false, unreadable("raw byte 0x%02x in the form body; percent-encode it", c)
		}
	}
	form, ok := splitForm(string(body))
	if !ok {
		return nil, false, unreadable("invalid %% escape in the form body")
	}
	for _, p := range form {
		if !validIn(cs, p.name) || !validIn(cs, p.value) {
			return nil, false, unreadable("a field is not valid %s", cs)
		}
	}
	return append(params, form...), queryOK, nil
}

// validIn reports whether s is valid in the declared charset. An undeclared
// one is whatever the bank assumes; the identity fields must be ASCII anyway.
func validIn(cs, s string) bool {
	switch cs {
	case "utf-8":
		return utf8.ValidString(s)
	case "us-ascii":
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return false
			}
		}
	}
	return true
}

// splitForm splits a query or form body on "&" only (servlets keep ";" in
// a value) and decodes "+" and %XX. ok is false if an escape was invalid:
// servlets drop such a parameter, lenient readers keep it literally.
func splitForm(s string) (params []formParam, ok bool) {
	ok = true
	for pair := range strings.SplitSeq(s, "&") {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		n, err1 := url.QueryUnescape(name)
		v, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			ok = false
			continue
		}
		params = append(params, formParam{n, v})
	}
	return params, ok
}

// pick returns the one value of field, or why it cannot: the field must be
// sent exactly once (a reader may take the first, the last, or join them),
// under exactly its name, counting every name a lenient reader could take
// for it (another letter case, other punctuation), and its value must be
// printable ASCII without whitespace, so that trimming, charsets and
// Unicode folding read it alike.
func pick(params []formParam, field, what string) (string, string) {
	want := skeleton(field)
	var found []formParam
	for _, p := range params {
		if !printable(p.name) {
			return "", "a field name has bytes other than printable ASCII"
		}
		if skeleton(p.name) == want {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 0:
		return "", "the " + what + " field is missing"
	case len(found) > 1:
		return "", fmt.Sprintf("the %s field is sent %d times (counting names that differ in case or punctuation)", what, len(found))
	case found[0].name != field:
		return "", "the " + what + " field's name differs from the configured one in case or punctuation"
	case found[0].value == "" || !printable(found[0].value):
		return "", "the " + what + " field is empty or has whitespace, control or non-ASCII characters"
	}
	return found[0].value, ""
}

// printable reports whether s is only printable ASCII, without space.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Response is what the decision needs of the bank's answer. A zero Response
// stands for no answer at all (the bank's connection failed).
type Response struct {
	Status int
	Header http.Header
}

// Action is what the gateway does to its bindings.
type Action int

const (
	// Nothing changes.
	Nothing Action = iota
	// Bind binds New to Service/User, after dropping Drop.
	Bind
	// Drop drops the bindings of Drop.
	Drop
	// Rotate moves the binding of Old to New.
	Rotate
)

var actionNames = [...]string{"nothing", "bind", "drop", "rotate"}

func (a Action) String() string { return actionNames[a] }

// Decision says what to do with the bindings once the bank answered.
type Decision struct {
	Action        Action
	Service, User string
	// Old and New are session cookie values; Drop lists those to unbind.
	Old, New string
	Drop     []string
	// Reason says why, in English, without values.
	Reason string
}

// DropFirst lists the bindings to drop before the request goes to the
// bank: a login-shaped request drops every session it names whatever the
// bank answers (Decide's Drop is then this same list), and a bank that logs another customer in without
// changing the session ID switches the session while its answer is still
// on its way, so a confirmation racing it would be released into the
// other customer's session.
func (w Watch) DropFirst() []string {
	if w.Shape == Login {
		return w.sessions
	}
	return nil
}

// Decide says what the bank's answer to the inspected request does to the
// bindings.
func (f *LoginForm) Decide(w Watch, resp Response) Decision {
	set, deleted := responseCookie(resp.Header, f.Cookie)
	fresh := set != "" && !slices.Contains(w.sessions, set)
	switch w.Shape {
	case Login:
		ok := f.succeeded(resp)
		switch {
		case w.bindable && ok && fresh:
			return Decision{Action: Bind, Service: w.Service, User: w.User, New: set, Drop: w.sessions, Reason: "login"}
		case len(w.sessions) > 0:
			why := "a login-shaped request named a bound session; the bank may have logged another customer into it"
			if ok && set != "" {
				why = "login not bound (" + f.unbound(w, fresh) + "); the session the request named is dropped"
			}
			return Decision{Action: Drop, Drop: w.sessions, Reason: why}
		case ok && set != "":
			return Decision{Reason: "login not bound: " + f.unbound(w, fresh)}
		}
	case LoginPage, MaybeLogin:
		if len(w.sessions) > 0 && (deleted || fresh || w.logout) {
			return Decision{Action: Drop, Drop: w.sessions, Reason: "logout, or a new or deleted session cookie in answer to a request that may be a login (" + w.Shape.String() + ")"}
		}
	case CannotBeLogin:
		switch {
		case len(w.sessions) > 0 && (deleted || w.logout):
			return Decision{Action: Drop, Drop: w.sessions, Reason: "logout or deleted session cookie"}
		case w.session != "" && len(w.sessions) == 1 && fresh:
			return Decision{Action: Rotate, Old: w.session, New: set, Reason: "session cookie rotated"}
		case len(w.sessions) > 0 && fresh:
			return Decision{Action: Drop, Drop: w.sessions, Reason: "new session cookie for a request naming more than one session"}
		}
	}
	return Decision{}
}

func (f *LoginForm) unbound(w Watch, fresh bool) string {
	switch {
	case !w.atLogin:
		return "login fields outside the login path"
	case !fresh:
		return "the bank kept a session ID the client chose"
	}
	return w.Why
}

func (f *LoginForm) succeeded(resp Response) bool {
	if !slices.Contains(f.SuccessStatus, resp.Status) {
		return false
	}
	if f.SuccessLocation == "" {
		return true
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	return err == nil && strings.HasPrefix(loc.Path, f.SuccessLocation)
}

// responseCookie finds the session cookie in a response: the value it is
// set to, or whether it is deleted.
func responseCookie(h http.Header, name string) (set string, deleted bool) {
	if len(h.Values("Set-Cookie")) == 0 {
		return "", false
	}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name != name {
			continue
		}
		if c.Value == "" || c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) {
			set, deleted = "", true
		} else {
			set, deleted = c.Value, false
		}
	}
	return set, deleted
}

// PathSessions returns the values of ";jsessionid=" path parameters, and
// of parameters named like the session cookie (Tomcat names its URL
// parameter after a configured cookie name), at any depth of
// percent-encoding, as a lenient bank finds them.
func PathSessions(escaped, cookie string) []string {
	return pathSessions(policy.Unescape(escaped), cookie)
}

// pathSessions is PathSessions of a path already decoded until stable.
func pathSessions(decoded, cookie string) []string {
	var ids []string
	for seg := range strings.SplitSeq(decoded, "/") {
		_, params, ok := strings.Cut(seg, ";")
		if !ok {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			name, val, _ := strings.Cut(p, "=")
			name = strings.TrimSpace(name)
			if (strings.EqualFold(name, "jsessionid") || cookie != "" && strings.EqualFold(name, cookie)) && val != "" {
				ids = append(ids, val)
			}
		}
	}
	return ids
}

// NamesSessionInPath reports whether the escaped path may name a session
// under any reading: "jsessionid" anywhere in it, in any letter case, at
// any depth of percent-encoding, or a path parameter named like the
// session cookie (a name as short as "sid" may stand in ordinary words).
func NamesSessionInPath(escaped, cookie string) bool {
	decoded := policy.Unescape(escaped)
	return strings.Contains(strings.ToLower(decoded), "jsessionid") || len(pathSessions(decoded, cookie)) > 0
}
