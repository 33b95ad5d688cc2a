package session

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/policy"
)

func testForm(t testing.TB) *LoginForm {
	t.Helper()
	login, err := policy.CompileFixedPath("/login")
	if err != nil {
		t.Fatal(err)
	}
	logout, err := policy.CompileFixedPath("/logout")
	if err != nil {
		t.Fatal(err)
	}
	return &LoginForm{Path: login, Logout: logout, ServiceField: "service_id", UserField: "user_id", Cookie: "JSESSIONID",
		SuccessStatus: []int{http.StatusFound, http.StatusSeeOther}, SuccessLocation: "/menu"}
}

const (
	formCT  = "application/x-www-form-urlencoded"
	victim  = "service_id=S001&user_id=U002&password=demo"
	bound   = "ATTACKER"
	newSess = "NEW"
)

// answer is the bank's response: status, Location and Set-Cookie lines.
func answer(status int, location string, cookies ...string) Response {
	h := http.Header{}
	if location != "" {
		h.Set("Location", location)
	}
	for _, c := range cookies {
		h.Add("Set-Cookie", c)
	}
	return Response{Status: status, Header: h}
}

var (
	loggedIn  = answer(http.StatusSeeOther, "/menu", "JSESSIONID="+newSess+"; Path=/; HttpOnly")
	kept      = answer(http.StatusSeeOther, "/menu", "JSESSIONID="+bound+"; Path=/")
	noCookie  = answer(http.StatusSeeOther, "/menu")
	failed    = answer(http.StatusOK, "")
	elsewhere = answer(http.StatusSeeOther, "/login?error", "JSESSIONID="+newSess)
	page      = answer(http.StatusOK, "", "JSESSIONID="+newSess)
	deleted   = answer(http.StatusSeeOther, "/login", "JSESSIONID=; Max-Age=0")
	plain     = answer(http.StatusOK, "")
)

type loginCase struct {
	name        string
	path, query string
	ct          []string // Content-Type header values
	body        string
	hasBody     bool // without body: len(body) > 0
	header      http.Header
	sessions    []string // first is the request's one session when alone
	resp        Response
	want        Action
	svc, user   string
	unreadable  bool
	shape       Shape
}

func (c loginCase) request() *Request {
	h := http.Header{}
	for k, v := range c.header {
		h[k] = v
	}
	for _, v := range c.ct {
		h.Add("Content-Type", v)
	}
	r := &Request{Path: c.path, RawQuery: c.query, Header: h, HasBody: c.hasBody || c.body != "", Sessions: c.sessions}
	if len(c.sessions) == 1 {
		r.Session = c.sessions[0]
	}
	return r
}

var old = []string{bound}

func TestLoginDecision(t *testing.T) {
	f := testForm(t)
	big := victim + "&pad=" + strings.Repeat("a", MaxLoginBody)
	for _, c := range []loginCase{
		// A browser's login binds the session the bank set; the one the
		// request named is dropped.
		{name: "browser form", path: "/login", ct: []string{formCT}, body: victim, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "browser form over a bound session", path: "/login", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "form with charset", path: "/login", ct: []string{formCT + "; charset=UTF-8"}, body: victim, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "form in Latin-1", path: "/login", ct: []string{formCT + "; charset=ISO-8859-1"}, body: victim + "&x=%E9", resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "non-ASCII password", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id=U002&password=%E3%81%82", resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "fields in the query, no body", path: "/login", query: victim, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "fields split between query and body", path: "/login", query: "service_id=S001", ct: []string{formCT}, body: "user_id=U002&password=demo", resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "path in capitals", path: "/LOGIN", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "path with a trailing slash", path: "/login/", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "path parameter", path: "/login;x=y", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "encoded path", path: "/%6Cogin", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},
		{name: "empty chunked body", path: "/login", query: victim, hasBody: true, resp: loggedIn, want: Bind, svc: "S001", user: "U002", shape: Login},

		// Read, but not unambiguously: nothing bound, the named session dropped.
		{name: "user twice in the body", path: "/login", ct: []string{formCT}, body: victim + "&user_id=U001", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "same user twice", path: "/login", ct: []string{formCT}, body: victim + "&user_id=U002", resp: loggedIn, want: Nothing, shape: Login},
		{name: "user in query and body", path: "/login", query: "user_id=U001", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "user field in capitals only", path: "/login", ct: []string{formCT}, body: "service_id=S001&USER_ID=U002&password=demo", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "user field in two cases", path: "/login", ct: []string{formCT}, body: victim + "&User_Id=U001", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "user field with other punctuation", path: "/login", ct: []string{formCT}, body: victim + "&user.id=U001", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "long s in the field name", path: "/login", ct: []string{formCT}, body: victim + "&%C5%BFervice_id=S002", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "user with a leading space", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id=+U002&password=demo", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "user with a trailing newline", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id=U002%0A&password=demo", resp: loggedIn, want: Nothing, shape: Login},
		{name: "user in full-width letters", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id=%EF%BC%B5002&password=demo", resp: loggedIn, want: Nothing, shape: Login},
		{name: "empty user", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id=&password=demo", resp: loggedIn, want: Nothing, shape: Login},
		{name: "no service", path: "/login", ct: []string{formCT}, body: "user_id=U002&password=demo", sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "non-ASCII field name", path: "/login", ct: []string{formCT}, body: victim + "&%E3%81%82=1", resp: loggedIn, want: Nothing, shape: Login},
		{name: "invalid escape in the query", path: "/login", query: "x=%zz", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "bank kept the client's session ID", path: "/login", ct: []string{formCT}, body: victim, sessions: old, resp: kept, want: Drop, shape: Login},
		{name: "login failed", path: "/login", ct: []string{formCT}, body: victim, sessions: old, resp: failed, want: Drop, shape: Login},
		{name: "success without a cookie", path: "/login", ct: []string{formCT}, body: victim, sessions: old, resp: noCookie, want: Drop, shape: Login},
		{name: "no answer", path: "/login", ct: []string{formCT}, body: victim, sessions: old, resp: Response{}, want: Drop, shape: Login},
		{name: "redirect elsewhere", path: "/login", ct: []string{formCT}, body: victim, resp: elsewhere, want: Nothing, shape: Login},
		{name: "every session named is dropped", path: "/login;jsessionid=P", ct: []string{formCT}, body: victim + "&user_id=U001", sessions: []string{"A", "B", "P"}, resp: loggedIn, want: Drop, shape: Login},

		// Not readable as the bank reads it: refused.
		{name: "JSON", path: "/login", ct: []string{"application/json"}, body: `{"service_id":"S001","user_id":"U002","password":"demo"}`, unreadable: true},
		{name: "JSON hiding a form", path: "/login", query: "service_id=S001", ct: []string{"application/json"}, body: `{"user_id":"U002","password":"demo","x":"&user_id=U001&"}`, unreadable: true},
		{name: "text/plain", path: "/login", ct: []string{"text/plain"}, body: victim, unreadable: true},
		{name: "multipart", path: "/login", ct: []string{"multipart/form-data; boundary=x"}, body: "--x\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\nU002\r\n--x--\r\n", unreadable: true},
		{name: "no Content-Type", path: "/login", body: victim, unreadable: true},
		{name: "two Content-Types", path: "/login", ct: []string{formCT, "application/json"}, body: victim, unreadable: true},
		{name: "Content-Type that does not parse", path: "/login", ct: []string{formCT + "; charset"}, body: victim, unreadable: true},
		{name: "Shift_JIS", path: "/login", ct: []string{formCT + "; charset=Shift_JIS"}, body: victim, unreadable: true},
		{name: "UTF-16", path: "/login", ct: []string{formCT + "; charset=UTF-16"}, body: victim, unreadable: true},
		{name: "raw non-ASCII byte", path: "/login", ct: []string{formCT}, body: victim + "&x=\xff", unreadable: true},
		{name: "raw space", path: "/login", ct: []string{formCT}, body: "service_id=S001&user_id= U002", unreadable: true},
		{name: "invalid escape in the body", path: "/login", ct: []string{formCT}, body: victim + "&x=%G1", unreadable: true},
		{name: "invalid UTF-8 under charset=utf-8", path: "/login", ct: []string{formCT + "; charset=utf-8"}, body: victim + "&x=%FF", unreadable: true},
		{name: "gzip", path: "/login", ct: []string{formCT}, header: http.Header{"Content-Encoding": {"gzip"}}, body: victim, unreadable: true},
		{name: "over 64 KiB", path: "/login", ct: []string{formCT}, body: big, unreadable: true},
		{name: "GET with a JSON body", path: "/LOGIN/", ct: []string{"application/json"}, body: `{"user_id":"U002"}`, unreadable: true},

		// Login fields outside the login path: never bound, named sessions dropped.
		{name: "query login at the root", path: "/", query: victim, sessions: old, resp: loggedIn, want: Drop, shape: Login},
		{name: "query login at the root, session kept", path: "/", query: victim, sessions: old, resp: noCookie, want: Drop, shape: Login},
		{name: "encoded field name in the query", path: "/menu", query: "%2575ser_id=U002", sessions: old, resp: plain, want: Drop, shape: Login},
		{name: "query login without a session", path: "/", query: victim, resp: loggedIn, want: Nothing, shape: Login},

		// A body the gateway did not read, elsewhere: a new cookie drops.
		{name: "form login at the root", path: "/", ct: []string{formCT}, body: victim, sessions: old, resp: loggedIn, want: Drop, shape: MaybeLogin},
		{name: "post elsewhere, no new cookie", path: "/search", ct: []string{formCT}, body: "q=x", sessions: old, resp: plain, want: Nothing, shape: MaybeLogin},

		// The login page without fields.
		{name: "login page", path: "/login", sessions: old, resp: plain, want: Nothing, shape: LoginPage},
		{name: "login page with a query", path: "/login", query: "lang=en", sessions: old, resp: plain, want: Nothing, shape: LoginPage},
		{name: "login page sets a cookie", path: "/login", sessions: old, resp: page, want: Drop, shape: LoginPage},

		// Requests that cannot be a login.
		{name: "rotation", path: "/menu", sessions: old, resp: page, want: Rotate, shape: CannotBeLogin},
		{name: "same cookie again", path: "/menu", sessions: old, resp: answer(http.StatusOK, "", "JSESSIONID="+bound), want: Nothing, shape: CannotBeLogin},
		{name: "deleted cookie", path: "/menu", sessions: old, resp: deleted, want: Drop, shape: CannotBeLogin},
		{name: "logout", path: "/LOGOUT", sessions: old, resp: plain, want: Drop, shape: CannotBeLogin},
		{name: "new cookie for two sessions", path: "/menu", sessions: []string{"A", "B"}, resp: page, want: Drop, shape: CannotBeLogin},
		{name: "nothing happens", path: "/menu", sessions: old, resp: plain, want: Nothing, shape: CannotBeLogin},
		{name: "query without login fields", path: "/menu", query: "page=2", sessions: old, resp: page, want: Rotate, shape: CannotBeLogin},
	} {
		t.Run(c.name, func(t *testing.T) {
			read := 0
			w, err := f.Inspect(c.request(), func() ([]byte, error) {
				read++
				return []byte(c.body), nil
			})
			var ue *UnreadableError
			if c.unreadable {
				if !errors.As(err, &ue) || ue.Reason == "" {
					t.Fatalf("Inspect error = %v; want an UnreadableError", err)
				}
				if strings.Contains(ue.Error(), "U002") || strings.Contains(ue.Error(), "demo") {
					t.Fatalf("reason %q shows a value", ue.Error())
				}
				return
			}
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if w.Shape != c.shape {
				t.Errorf("shape %v, want %v", w.Shape, c.shape)
			}
			if read > 1 || read == 1 && !(w.atLogin && c.request().HasBody) {
				t.Errorf("body read %d times", read)
			}
			d := f.Decide(w, c.resp)
			if d.Action != c.want || d.Service != c.svc || d.User != c.user {
				t.Fatalf("decision %v %q/%q (%s), want %v %q/%q", d.Action, d.Service, d.User, d.Reason, c.want, c.svc, c.user)
			}
			switch d.Action {
			case Bind:
				if d.New != newSess || !slices.Equal(d.Drop, c.sessions) {
					t.Errorf("bind %q dropping %q; want %q dropping %q", d.New, d.Drop, newSess, c.sessions)
				}
			case Drop:
				if !slices.Equal(d.Drop, c.sessions) {
					t.Errorf("drops %q, want %q", d.Drop, c.sessions)
				}
			case Rotate:
				if d.Old != bound || d.New != newSess {
					t.Errorf("rotates %q to %q", d.Old, d.New)
				}
			}
			if d.Action != Bind && d.Action != Rotate && d.Reason == "" && c.want != Nothing {
				t.Error("no reason given")
			}
			if strings.Contains(d.Reason, newSess) || strings.Contains(d.Reason, bound) || strings.Contains(d.Reason, "demo") {
				t.Errorf("reason %q shows a cookie or password", d.Reason)
			}
		})
	}
}

// A failing body read is reported, not taken for an empty body.
func TestLoginBodyReadError(t *testing.T) {
	f := testForm(t)
	boom := errors.New("connection reset")
	r := &Request{Path: "/login", Header: http.Header{"Content-Type": {formCT}}, HasBody: true}
	if _, err := f.Inspect(r, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Inspect error = %v; want the read error", err)
	}
}

func TestPathSessions(t *testing.T) {
	for _, c := range []struct {
		path, cookie string
		want         []string
	}{
		{"/menu", "JSESSIONID", nil},
		{"/menu;jsessionid=A", "JSESSIONID", []string{"A"}},
		{"/x;a=1;JSESSIONID=B/menu", "JSESSIONID", []string{"B"}},
		{"/menu%3Bjsessionid%3DC", "JSESSIONID", []string{"C"}},
		{"/menu%253Bjsessionid%253DD", "JSESSIONID", []string{"D"}},
		{"/a;jsessionid=E/b;jsessionid=F", "JSESSIONID", []string{"E", "F"}},
		{"/menu;jsessionid=", "JSESSIONID", nil},
		// Tomcat names its URL parameter after a configured cookie name.
		{"/login;BANKSID=G", "BANKSID", []string{"G"}},
		{"/login;banksid=H", "BANKSID", []string{"H"}},
		{"/login%3B%20BankSid%20%3DI", "BANKSID", []string{"I"}},
		{"/login;jsessionid=J;BANKSID=K", "BANKSID", []string{"J", "K"}},
		{"/login;BANKSID=L", "", nil},
		{"/consider/inside", "SID", nil},
	} {
		if got := PathSessions(c.path, c.cookie); !slices.Equal(got, c.want) {
			t.Errorf("PathSessions(%q, %q) = %q, want %q", c.path, c.cookie, got, c.want)
		}
		if got := NamesSessionInPath(c.path, c.cookie); got != (len(c.want) > 0 || strings.Contains(strings.ToLower(c.path), "jsessionid")) {
			t.Errorf("NamesSessionInPath(%q, %q) = %v", c.path, c.cookie, got)
		}
	}
}

// reader is an independent way a bank may read the login fields of a query
// and a body it takes for a form.
type reader func(query, body string) (service, user string)

// lenientPairs splits like a servlet but keeps invalid escapes literally.
func lenientPairs(query, body string) [][2]string {
	var out [][2]string
	for _, s := range []string{query, body} {
		for pair := range strings.SplitSeq(s, "&") {
			if pair == "" {
				continue
			}
			n, v, _ := strings.Cut(pair, "=")
			out = append(out, [2]string{lenientUnescape(n), lenientUnescape(v)})
		}
	}
	return out
}

func lenientUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return strings.ReplaceAll(s, "+", " ")
}

var readers = map[string]reader{
	// Tomcat: exact names, first value.
	"servlet first": func(q, b string) (string, string) {
		var s, u string
		var hs, hu bool
		for _, p := range lenientPairs(q, b) {
			switch {
			case p[0] == "service_id" && !hs:
				s, hs = p[1], true
			case p[0] == "user_id" && !hu:
				u, hu = p[1], true
			}
		}
		return s, u
	},
	// A framework binding to a map: last value.
	"last value": func(q, b string) (string, string) {
		var s, u string
		for _, p := range lenientPairs(q, b) {
			switch p[0] {
			case "service_id":
				s = p[1]
			case "user_id":
				u = p[1]
			}
		}
		return s, u
	},
	// ASP.NET: names in any case, repeated values joined, values trimmed.
	"iis": func(q, b string) (string, string) {
		var s, u []string
		for _, p := range lenientPairs(q, b) {
			switch strings.ToLower(p[0]) {
			case "service_id":
				s = append(s, strings.TrimSpace(p[1]))
			case "user_id":
				u = append(u, strings.TrimSpace(p[1]))
			}
		}
		return strings.Join(s, ","), strings.Join(u, ",")
	},
	// PHP: "." and " " in names are "_", last value.
	"php": func(q, b string) (string, string) {
		var s, u string
		for _, p := range lenientPairs(q, b) {
			switch strings.NewReplacer(".", "_", " ", "_").Replace(p[0]) {
			case "service_id":
				s = p[1]
			case "user_id":
				u = p[1]
			}
		}
		return s, u
	},
}

// FuzzLoginDecision: whatever the request, the gateway binds only an
// identity that every reader reads alike, and never moves a binding on a
// request that carries login fields.
func FuzzLoginDecision(f *testing.F) {
	for _, s := range []struct{ path, query, ct, body string }{
		{"/login", "", formCT, victim},
		{"/login", "service_id=S001", "application/json", `{"user_id":"U002","password":"demo","x":"&user_id=U001&"}`},
		{"/login", victim, "", ""},
		{"/LOGIN/", "", formCT, victim},
		{"/login;x=y", "", formCT, victim},
		{"/", "", formCT, victim},
		{"/", victim, "", ""},
		{"/login", "user_id=U001", formCT, victim},
		{"/login", "", formCT, victim + "&USER_ID=U001"},
		{"/login", "", formCT, victim + "&user.id=U001"},
		{"/login", "", formCT, "service_id=S001&user_id=+U002"},
		{"/login", "", formCT + "; charset=utf-16", victim},
		{"/login", "", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\nU002\r\n--x--\r\n"},
		{"/login", "", "text/plain", victim},
		{"/menu", "", "", ""},
	} {
		f.Add(s.path, s.query, s.ct, s.body)
	}
	form := testForm(f)
	f.Fuzz(func(t *testing.T, path, query, ct, body string) {
		r := &Request{Path: path, RawQuery: query, Header: http.Header{}, HasBody: body != "", Session: bound, Sessions: old}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		w, err := form.Inspect(r, func() ([]byte, error) { return []byte(body), nil })
		if err != nil {
			return
		}
		d := form.Decide(w, loggedIn)
		if d.Action == Rotate && (w.Shape != CannotBeLogin || body != "" || form.Path.Matches(path)) {
			t.Fatalf("rotation followed for a %v request", w.Shape)
		}
		if d.Action != Bind {
			return
		}
		if !slices.Contains(d.Drop, bound) {
			t.Fatal("bound a login without dropping the session it named")
		}
		for name, read := range readers {
			if s, u := read(query, body); s != d.Service || u != d.User {
				t.Fatalf("bound %q/%q; the %s reader reads %q/%q", d.Service, d.User, name, s, u)
			}
		}
	})
}

// The decision runs on every request that names a session: it must cost
// little next to proxying.
func BenchmarkLoginInspect(b *testing.B) {
	f := testForm(b)
	for _, c := range []struct{ name, path, query string }{
		{"clean", "/transfer/input", "page=2"},
		{"encoded", "/transfer;jsessionid=ABC/%E6%8C%AF%E8%BE%BC", "q=%E3%81%82"},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &Request{Path: c.path, RawQuery: c.query, Header: http.Header{}, Session: bound, Sessions: old}
			b.ReportAllocs()
			for b.Loop() {
				w, _ := f.Inspect(r, nil)
				f.Decide(w, plain)
			}
		})
	}
}
