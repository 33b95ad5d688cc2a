// Package demobank is the legacy web-banking site that otpgate protects in its demo and
// its tests. It knows nothing of OTP: users log in with a password, get a JSESSIONID
// cookie, and every form executes at once. It keeps a ledger of executed operations so
// that a test can prove what reached it.
//
// The bank is deliberately as lenient as old Java and IIS servers: case-insensitive,
// repeatedly percent-decoded paths, ";jsessionid=" path parameters, trailing slashes
// and dots, method overrides, parameters from query and body together. The gateway in
// front must catch every request that the bank would execute.
package demobank

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

const sessionCookie = "JSESSIONID"

// defaultIdle is the session timeout of a typical servlet container (web.xml default).
const defaultIdle = 30 * time.Minute

// Entry is one executed operation in the bank's ledger.
type Entry struct {
	Op      string            `json:"op"`      // transfer | bill_payment | bulk_transfer | user_change
	Service string            `json:"service"` // the logged-in user's service ID
	User    string            `json:"user"`    // the logged-in user's user ID
	Method  string            `json:"method"`  // the effective method after overrides
	Params  map[string]string `json:"params"`  // first value of each parameter; a file part "x" gives x, x_size and x_sha256
	At      time.Time         `json:"at"`
	Receipt string            `json:"receipt"` // R000001, R000002, … in execution order
}

// Bank is the demo banking site. It implements http.Handler and is safe for
// concurrent use. The zero value is not usable; call New.
type Bank struct {
	now  func() time.Time
	idle time.Duration

	mu       sync.Mutex
	sessions map[string]*session
	profiles map[string]profile // by userKey
	ledger   []Entry
	seq      int
}

type session struct {
	user     User
	lastSeen time.Time
}

// New returns a bank with the demo users, no sessions and an empty ledger.
func New() *Bank {
	b := &Bank{
		now:      time.Now,
		idle:     defaultIdle,
		sessions: map[string]*session{},
		profiles: map[string]profile{},
	}
	for _, d := range demoUsers {
		b.profiles[userKey(d.ServiceID, d.UserID)] = d.profile
	}
	return b
}

// Ledger returns a copy of the executed operations, in execution order.
func (b *Bank) Ledger() []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Entry, len(b.ledger))
	for i, e := range b.ledger {
		e.Params = maps.Clone(e.Params)
		out[i] = e
	}
	return out
}

// ServeHTTP routes on the leniently read path; see the package documentation.
func (b *Bank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	t, err := readTarget(r)
	if err != nil {
		renderProblem(w, http.StatusBadRequest, "不正なリクエストです", "URLを解釈できません。")
		return
	}
	switch t.path {
	case "/", "/login":
		b.serveLogin(w, r)
	case "/logout":
		b.serveLogout(w, r, t)
	case "/ledger.json":
		b.serveLedger(w, r)
	case "/menu":
		if u, ok := b.requireSession(w, r, t); ok {
			render(w, http.StatusOK, menuPage, pageData{Title: "メニュー", User: &u, Ops: operations})
		}
	case "/bulk/sample.txt":
		serveSample(w, "sogo.txt", zengintest.Sogo())
	case "/payroll/sample.txt":
		serveSample(w, "kyuyo.txt", zengintest.Kyuyo())
	default:
		if op, ok := opsByPage[t.path]; ok {
			b.serveForm(w, r, t, op)
		} else if op, ok := opsByAction[t.path]; ok {
			b.serveOperation(w, r, t, op)
		} else {
			renderProblem(w, http.StatusNotFound, "ページが見つかりません", "指定されたページは存在しません。")
		}
	}
}

// serveLogin logs in on any method that carries the login fields, in the query
// or in any body the bank reads, as a legacy login servlet whose service() reads
// getParameter whatever the method; a request without them gets the login page.
func (b *Bank) serveLogin(w http.ResponseWriter, r *http.Request) {
	data := pageData{Title: "ログイン", Users: Users()}
	ps, err := readParams(w, r)
	if err != nil {
		renderProblem(w, http.StatusBadRequest, "不正なリクエストです", "入力内容を読み取れません。")
		return
	}
	if r.Method != http.MethodPost && !ps.has("service_id", "user_id", "password") {
		render(w, http.StatusOK, loginPage, data)
		return
	}
	u, ok := authenticate(ps.get("service_id"), ps.get("user_id"), ps.get("password"))
	if !ok {
		data.Error = "サービスID、利用者ID、またはパスワードが正しくありません。"
		data.ServiceID, data.UserID = ps.get("service_id"), ps.get("user_id")
		render(w, http.StatusOK, loginPage, data)
		return
	}
	// A fresh ID on every login, whatever the browser sent: an ID planted before
	// login (session fixation) must never become an authenticated session.
	id := newSessionID()
	now := b.now()
	b.mu.Lock()
	b.sweepLocked(now)
	b.sessions[id] = &session{user: u, lastSeen: now}
	b.mu.Unlock()
	// Not Secure: the demo serves the bank over plain HTTP behind the gateway.
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/menu", http.StatusSeeOther)
}

func authenticate(serviceID, userID, password string) (User, bool) {
	for _, d := range demoUsers {
		if d.ServiceID == serviceID && d.UserID == userID {
			// Constant time out of habit: this is a bank login form, even a demo one.
			if subtle.ConstantTimeCompare([]byte(d.Password), []byte(password)) == 1 {
				return d.User, true
			}
			return User{}, false
		}
	}
	return User{}, false
}

func newSessionID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails; crashes the program instead
	return hex.EncodeToString(b[:])
}

func (b *Bank) serveLogout(w http.ResponseWriter, r *http.Request, t target) {
	b.mu.Lock()
	for _, id := range sessionCandidates(r, t) {
		delete(b.sessions, id)
	}
	b.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// sessionCandidates lists the session IDs a request offers: cookies first (Tomcat
// prefers them), then ";jsessionid=" path parameters, which servlets accepted for
// browsers without cookies.
func sessionCandidates(r *http.Request, t target) []string {
	var ids []string
	for _, c := range r.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			ids = append(ids, c.Value)
		}
	}
	return append(ids, t.sessionIDs...)
}

// session returns the user of the first live session the request offers and marks
// that session as used.
func (b *Bank) session(r *http.Request, t target) (User, bool) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range sessionCandidates(r, t) {
		s, ok := b.sessions[id]
		if !ok {
			continue
		}
		if now.Sub(s.lastSeen) > b.idle {
			delete(b.sessions, id)
			continue
		}
		s.lastSeen = now
		return s.user, true
	}
	return User{}, false
}

// requireSession answers 303 to the login page when there is no session.
func (b *Bank) requireSession(w http.ResponseWriter, r *http.Request, t target) (User, bool) {
	u, ok := b.session(r, t)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}
	return u, ok
}

// sweepLocked drops idle sessions so that the map cannot grow without bound over a
// long demo. Called on login, the only place sessions are added.
func (b *Bank) sweepLocked(now time.Time) {
	for id, s := range b.sessions {
		if now.Sub(s.lastSeen) > b.idle {
			delete(b.sessions, id)
		}
	}
}

func (b *Bank) serveForm(w http.ResponseWriter, r *http.Request, t target, op *operation) {
	u, ok := b.requireSession(w, r, t)
	if !ok {
		return
	}
	data := pageData{Title: op.title, User: &u, Op: op}
	if op.op == opUserChange {
		b.mu.Lock()
		p := b.profiles[userKey(u.ServiceID, u.UserID)]
		b.mu.Unlock()
		data.Values = map[string]string{"email": p.Email, "phone": p.Phone}
	}
	render(w, http.StatusOK, formPage, data)
}

func (b *Bank) serveOperation(w http.ResponseWriter, r *http.Request, t target, op *operation) {
	u, ok := b.requireSession(w, r, t)
	if !ok {
		return
	}
	ps, err := readParams(w, r)
	if err != nil {
		renderProblem(w, http.StatusBadRequest, "不正なリクエストです", "入力内容を読み取れません。")
		return
	}
	method := effectiveMethod(r, ps)
	if !executingMethods[method] {
		w.Header().Set("Allow", allowHeader)
		renderProblem(w, http.StatusMethodNotAllowed, "受け付けできません", "このメソッドには対応していません: "+method)
		return
	}
	if missing := op.missing(ps); len(missing) > 0 {
		render(w, http.StatusBadRequest, missingPage, pageData{Title: op.title, User: &u, Op: op, Missing: missing})
		return
	}
	e := Entry{
		Op:      op.op,
		Service: u.ServiceID,
		User:    u.UserID,
		Method:  method,
		Params:  ps.record(),
		At:      b.now(),
	}
	if op.kind != "" {
		// The endpoint decides the kind, whatever a "kind" parameter says.
		e.Params["kind"] = op.kind
	}
	b.mu.Lock()
	b.seq++
	e.Receipt = fmt.Sprintf("R%06d", b.seq)
	b.ledger = append(b.ledger, e)
	if op.op == opUserChange {
		b.profiles[userKey(u.ServiceID, u.UserID)] = profile{Email: e.Params["email"], Phone: e.Params["phone"]}
	}
	b.mu.Unlock()
	render(w, http.StatusOK, donePage, pageData{Title: op.title + "完了", User: &u, Op: op, Receipt: e.Receipt, At: e.At.In(jst), Rows: op.rows(e.Params)})
}

// jst is Japan time, which the bank's pages show whatever the server's zone
// (the gateway's pages do the same). Japan has no daylight saving time, so a
// fixed zone is exact without the tz database.
var jst = time.FixedZone("JST", 9*60*60)

// serveLedger needs no session: it is the tests' and the demo's window into what the
// bank executed, not a page of the site.
func (b *Bank) serveLedger(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		renderProblem(w, http.StatusMethodNotAllowed, "受け付けできません", "このメソッドには対応していません: "+r.Method)
		return
	}
	body, err := json.MarshalIndent(b.Ledger(), "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(append(body, '\n'))
}

// Interface guards
var _ http.Handler = (*Bank)(nil)

// TokenPage is the gateway's token management page, which the menu links
// to: the one link a bank adds for the gateway (otpgate's default base
// path; a bank that moves it links there instead).
const TokenPage = "/.otpgate/token"

// serveSample offers a sample Zengin transfer file for download, as some
// banks offer a template: 120-byte JIS8 records with CR LF, which the
// gateway's confirm page summarises.
func serveSample(w http.ResponseWriter, name string, f zengintest.File) {
	f.LineBreak = "\r\n"
	b := f.MustBytes()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Write(b)
}
