package gate_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/session"
)

// A request is a customer's only when it names exactly one session, the
// one the bank set at their login.
func TestLoginCustomer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.sessions.Bind(ctx, "S3CR3T", taro.Service, taro.User, clientIP); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		uri    string
		cookie []string
		known  bool
	}{
		{"bound session", "/menu", []string{"JSESSIONID=S3CR3T"}, true},
		{"no cookie", "/menu", nil, false},
		{"unbound session", "/menu", []string{"JSESSIONID=OTHER"}, false},
		{"two session cookies", "/menu", []string{"JSESSIONID=S3CR3T; JSESSIONID=OTHER"}, false},
		{"two cookie lines", "/menu", []string{"JSESSIONID=S3CR3T", "JSESSIONID=S3CR3T"}, false},
		{"session in the path too", "/menu;jsessionid=OTHER", []string{"JSESSIONID=S3CR3T"}, false},
		{"session in the path, encoded twice", "/menu%253Bjsessionid%253DOTHER", []string{"JSESSIONID=S3CR3T"}, false},
		{"empty cookie", "/menu", []string{"JSESSIONID="}, false},
	} {
		r := &gate.Request{Method: http.MethodGet, URI: tc.uri, Header: http.Header{"Cookie": tc.cookie}}
		who, err := e.g.LoginCustomer(ctx, r)
		if err != nil || (who != nil) != tc.known {
			t.Errorf("%s: %+v, %v; want known=%v", tc.name, who, err, tc.known)
		}
		if who != nil && (who.Service != taro.Service || who.User != taro.User || who.Session == "") {
			t.Errorf("%s: %+v", tc.name, who)
		}
	}
}

// The login watcher binds a session the bank set in answer to a login it
// read unambiguously, follows a rotation only for a request that cannot
// be a login, and refuses a login body it cannot read as the bank does.
func TestWatchLogin(t *testing.T) {
	t.Parallel()
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	setCookie := func(v string) http.Header { return http.Header{"Set-Cookie": {"JSESSIONID=" + v + "; Path=/"}} }
	tests := []struct {
		name    string
		r       gate.Request
		body    string
		status  int
		answer  http.Header
		watched bool
		refused string
		action  session.Action
	}{
		{name: "nothing to watch", r: gate.Request{Method: http.MethodGet, URI: "/menu"}},
		{name: "login", r: gate.Request{Method: http.MethodPost, URI: "/login", Header: form, HasBody: true},
			body: "service_id=SVC01&user_id=taro&password=x", status: http.StatusFound, answer: setCookie("NEW"), watched: true, action: session.Bind},
		{name: "login as two users", r: gate.Request{Method: http.MethodPost, URI: "/LOGIN", Header: form, HasBody: true},
			body: "service_id=SVC01&user_id=taro&user_id=jiro", status: http.StatusFound, answer: setCookie("NEW"), watched: true, action: session.Nothing},
		{name: "unreadable login", r: gate.Request{Method: http.MethodPost, URI: "/login", Header: http.Header{"Content-Type": {"text/plain"}}, HasBody: true},
			body: "service_id=SVC01&user_id=taro", refused: gate.LoginUnreadable},
		{name: "rotation", r: gate.Request{Method: http.MethodGet, URI: "/menu", Header: http.Header{"Cookie": {"JSESSIONID=OLD"}}},
			status: http.StatusOK, answer: setCookie("ROTATED"), watched: true, action: session.Rotate},
		{name: "logout", r: gate.Request{Method: http.MethodGet, URI: "/logout", Header: http.Header{"Cookie": {"JSESSIONID=OLD"}}},
			status: http.StatusOK, watched: true, action: session.Drop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if err := e.sessions.Bind(ctx, "OLD", jiro.Service, jiro.User, clientIP); err != nil {
				t.Fatal(err)
			}
			tc.r.ClientIP = clientIP
			w, ref := e.g.WatchLogin(&tc.r, func() ([]byte, error) { return []byte(tc.body), nil })
			if tc.refused != "" {
				if ref == nil || ref.Code != tc.refused || ref.Status != http.StatusBadRequest || w != nil {
					t.Fatalf("WatchLogin = %v, %+v; want refused %s", w, ref, tc.refused)
				}
				return
			}
			if ref != nil || (w != nil) != tc.watched {
				t.Fatalf("WatchLogin = %v, %+v; want watched=%v", w, ref, tc.watched)
			}
			if w == nil {
				return
			}
			if d := w.Answered(ctx, tc.status, tc.answer); d.Action != tc.action {
				t.Fatalf("decision %+v; want %v", d, tc.action)
			}
			bound := func(cookie string) *gate.Customer {
				who, err := e.g.LoginCustomer(ctx, &gate.Request{URI: "/menu", Header: http.Header{"Cookie": {"JSESSIONID=" + cookie}}})
				if err != nil {
					t.Fatal(err)
				}
				return who
			}
			switch tc.action {
			case session.Bind:
				if who := bound("NEW"); who == nil || who.User != "taro" {
					t.Errorf("the new session is %+v; want taro's", who)
				}
			case session.Rotate:
				if who := bound("ROTATED"); who == nil || who.User != "jiro" || bound("OLD") != nil {
					t.Errorf("rotated session %+v; want jiro's, and the old one unbound", who)
				}
			case session.Drop:
				if bound("OLD") != nil {
					t.Error("the session is still bound after logout")
				}
			case session.Nothing:
				if bound("NEW") != nil {
					t.Error("an ambiguous login bound a session")
				}
			}
		})
	}
}

// A login answered with the token page first: a customer whose service
// requires OTP and who has no active token, and no one else.
func TestTokenFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bind := func(who *gate.Customer) session.Decision {
		return session.Decision{Action: session.Bind, Service: who.Service, User: who.User, New: "S3CR3T"}
	}
	for _, tc := range []struct {
		name string
		d    session.Decision
		want bool
	}{
		{"no token, OTP required", bind(hanako), true},
		{"active token", bind(taro), false},
		{"no token, OTP not required", bind(jiro), false},
		{"no login", session.Decision{Action: session.Nothing, Service: hanako.Service, User: hanako.User}, false},
		{"a rotation", session.Decision{Action: session.Rotate, Service: hanako.Service, User: hanako.User}, false},
	} {
		if got := e.g.TokenFirst(ctx, tc.d); got != tc.want {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
	// An expired token must be renewed first too.
	e.clk.add(366 * 24 * time.Hour)
	if !e.g.TokenFirst(ctx, bind(taro)) {
		t.Errorf("expired token: not sent to the token page")
	}
}

// A bank whose session cookie is not JSESSIONID (Tomcat with a configured
// cookie name) reads its URL session parameter under that name too. A
// login naming the attacker's bound session that way, with no cookie,
// drops the binding before it goes to the bank, and the session is no
// identity for a request that also names it in the path.
func TestWatchLoginPathSessionNamedLikeTheCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lf := loginForm(t)
	lf.Cookie = "BANKSID"
	g := gate.New(e.db, e.tokens, e.held, e.sessions, lf, nil)
	if err := e.sessions.Bind(ctx, "A", jiro.Service, jiro.User, clientIP); err != nil {
		t.Fatal(err)
	}
	r := gate.Request{Method: http.MethodPost, URI: "/login;banksid=A", ClientIP: clientIP, HasBody: true,
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}
	w, ref := g.WatchLogin(&r, func() ([]byte, error) { return []byte("service_id=SVC01&user_id=taro&password=x"), nil })
	if ref != nil || w == nil {
		t.Fatalf("WatchLogin = %v, %+v; want the login watched", w, ref)
	}
	if ref := w.Forwarding(ctx); ref != nil {
		t.Fatal(ref)
	}
	w.Done()
	who, err := g.LoginCustomer(ctx, &gate.Request{URI: "/menu", Header: http.Header{"Cookie": {"BANKSID=A"}}})
	if err != nil || who != nil {
		t.Fatalf("session A after a login naming it as ;banksid=: %+v, %v; want no customer", who, err)
	}
	if err := e.sessions.Bind(ctx, "B", jiro.Service, jiro.User, clientIP); err != nil {
		t.Fatal(err)
	}
	who, err = g.LoginCustomer(ctx, &gate.Request{URI: "/menu;BANKSID=C", Header: http.Header{"Cookie": {"BANKSID=B"}}})
	if err != nil || who != nil {
		t.Fatalf("a cookie with another session in the path identified %+v, %v; want no one", who, err)
	}
}

// A protected request naming a session in a path parameter called after
// the bank's cookie (here BANKSID) is audited and logged without its value.
func TestHoldRedactsPathSessionNamedLikeTheCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lf := loginForm(t)
	lf.Cookie = "BANKSID"
	g := gate.New(e.db, e.tokens, e.held, e.sessions, lf, nil)
	m, r := transfer(t)
	r.URI = "/transfer/execute;banksid=S3CR3T?step=2"
	before := len(e.audit())
	var calls int
	g.Hold(ctx, known(nil, &calls), m, r)
	trail := e.audit()[before:]
	if len(trail) != 1 || trail[0].Request != "POST /transfer/execute;BANKSID=REDACTED?step=2" {
		t.Fatalf("audit trail %+v; want one record with the session parameter redacted", trail)
	}
}
