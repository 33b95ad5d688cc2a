package caddymodule

import (
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Logins fail closed (issue 6, class 2; SECURITY.md 26): the attacks of the
// review, through the real Caddy chain against the demo bank, which logs in
// on any method and body type as a legacy login servlet does.

// formType is what a browser sends a form as.
const formType = "application/x-www-form-urlencoded"

// victimLogin is a login for the victim, whose password the attacker has.
var victimLogin = url.Values{"service_id": {"S001"}, "user_id": {"U002"}, "password": {"demo"}}

// loginRequest builds a login request for the victim.
func loginRequest(method, path, contentType, body string) *http.Request {
	req, _ := http.NewRequest(method, gatewayURL+path, strings.NewReader(body))
	if body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func multipartLogin() (string, string) {
	var b strings.Builder
	mw := multipart.NewWriter(&b)
	for _, k := range []string{"service_id", "user_id", "password"} {
		mw.WriteField(k, victimLogin.Get(k))
	}
	mw.Close()
	return mw.FormDataContentType(), b.String()
}

// What the gateway did with a login the attacker sent for the victim.
const (
	refused   = "refused"   // 400 before the bank saw it
	dropped   = "dropped"   // the bank logged the victim in; nothing is bound to the new session
	forVictim = "forVictim" // read unambiguously: the new session is the victim's, and needs the victim's code
)

// An attacker who is logged in with their own token and knows the victim's
// password sends a login for the victim that the old gateway did not
// recognise as one, with the attacker's bound cookie. The bank logs the
// victim in and sets a new cookie. The old gateway followed it as a
// rotation of the attacker's binding, so the attacker's own code released
// a transfer the bank executed as the victim. Now the new session is never
// the attacker's: the login is refused, or nothing is bound to it, or it is
// bound to the victim (who has no token, so nothing can be confirmed).
func TestLoginAttacksNeverMoveABinding(t *testing.T) {
	e := newEnv(t, envOptions{})
	attacker := gwEnrolled(e, "S001", "U001")
	form := victimLogin.Encode()
	mpType, mpBody := multipartLogin()
	// Path variants may also be refused as ambiguous paths, before the
	// login watch: either way the bank does not log the victim in behind
	// the attacker's binding.
	variant := []string{forVictim, refused}
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want []string
	}{
		{"JSON", func() *http.Request {
			return loginRequest(http.MethodPost, "/login", "application/json", `{"service_id":"S001","user_id":"U002","password":"demo"}`)
		}, []string{refused}},
		{"multipart", func() *http.Request { return loginRequest(http.MethodPost, "/login", mpType, mpBody) }, []string{refused}},
		{"text/plain", func() *http.Request { return loginRequest(http.MethodPost, "/login", "text/plain", form) }, []string{refused}},
		{"GET with the query", func() *http.Request { return loginRequest(http.MethodGet, "/login?"+form, "", "") }, []string{forVictim}},
		{"HEAD with the query", func() *http.Request { return loginRequest(http.MethodHead, "/login?"+form, "", "") }, []string{forVictim}},
		{"PUT form", func() *http.Request { return loginRequest(http.MethodPut, "/login", formType, form) }, []string{forVictim}},
		{"PATCH form", func() *http.Request { return loginRequest(http.MethodPatch, "/login", formType, form) }, []string{forVictim}},
		{"method override header", func() *http.Request {
			r := loginRequest(http.MethodPost, "/login", formType, form)
			r.Header.Set("X-HTTP-Method-Override", "PUT")
			return r
		}, []string{forVictim}},
		{"_method in the query", func() *http.Request { return loginRequest(http.MethodPost, "/login?_method=PUT", formType, form) }, []string{forVictim}},
		{"/LOGIN", func() *http.Request { return loginRequest(http.MethodPost, "/LOGIN", formType, form) }, variant},
		{"/login/", func() *http.Request { return loginRequest(http.MethodPost, "/login/", formType, form) }, variant},
		{"/login;x=y", func() *http.Request { return loginRequest(http.MethodPost, "/login;x=y", formType, form) }, variant},
		{"/%6Cogin", func() *http.Request { return loginRequest(http.MethodPost, "/%6Cogin", formType, form) }, variant},
		{"/menu/../login", func() *http.Request { return loginRequest(http.MethodPost, "/menu/../login", formType, form) }, variant},
		{"/Login. with the query", func() *http.Request { return loginRequest(http.MethodGet, "/Login.?"+form, "", "") }, variant},
		// The bank's login page is its root too: a login path the gateway
		// was not told about.
		{"form at the root", func() *http.Request { return loginRequest(http.MethodPost, "/", formType, form) }, []string{dropped}},
		{"query at the root", func() *http.Request { return loginRequest(http.MethodGet, "/?"+form, "", "") }, []string{dropped}},
		{"user in query and body", func() *http.Request {
			return loginRequest(http.MethodPost, "/login?user_id=U002", formType, "service_id=S001&user_id=U001&password=demo")
		}, []string{dropped}},
		{"user field in two cases", func() *http.Request {
			return loginRequest(http.MethodPost, "/login", formType, form+"&USER_ID=U001")
		}, []string{dropped}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attacker.login()
			own := gwSession(attacker)
			before := len(e.ledger())
			res, body := attacker.do(tc.req())
			got := gwSession(attacker)
			b, found, err := e.gw().sessions.Lookup(context.Background(), got)
			if err != nil {
				t.Fatal(err)
			}
			var outcome string
			switch {
			case res.StatusCode == http.StatusBadRequest && got == own:
				outcome = refused
				if !found || b.User != "U001" {
					t.Errorf("a refused login changed the attacker's own binding: %+v %v", b, found)
				}
			case res.StatusCode != http.StatusSeeOther || got == own:
				t.Fatalf("status %d, session changed %v; want 400, or the bank logging the victim in\n%s", res.StatusCode, got != own, body)
			case !found:
				outcome = dropped
			case b.Service == "S001" && b.User == "U002":
				outcome = forVictim
			default:
				// The attack of the review: carry it through to the ledger.
				t.Errorf("the victim's new session is bound to %s/%s", b.Service, b.User)
				outcome = "attacker"
			}
			t.Logf("outcome: %s", outcome)
			if !slices.Contains(tc.want, outcome) {
				t.Errorf("outcome %s; want one of %v", outcome, tc.want)
			}
			if outcome != refused {
				if _, oldFound, _ := e.gw().sessions.Lookup(context.Background(), own); oldFound {
					t.Error("the attacker's binding survived a login over it")
				}
			}

			// The attack's last step: a transfer with the new cookie,
			// confirmed with the attacker's own code if it is paused.
			req := loginRequest(http.MethodPost, "/transfer/execute", formType, gwTransfer.Encode())
			req.Header.Set("Accept", "application/json")
			res, body = attacker.do(req)
			var out map[string]any
			json.Unmarshal([]byte(body), &out)
			if id, _ := out["challenge"].(string); res.StatusCode == http.StatusUnauthorized && id != "" {
				gwConfirmJSON(attacker, id, attacker.code())
			}
			want := map[string]string{refused: "otp_required", dropped: "login_required", forVictim: "enrollment_required"}[outcome]
			if out["error"] != want {
				t.Errorf("transfer after outcome %s: status %d %s; want %s", outcome, res.StatusCode, body, want)
			}
			for _, l := range e.ledger()[before:] {
				if l.User == "U002" {
					t.Fatalf("the bank executed %s as the victim: %+v", l.Op, l)
				}
			}
		})
	}
}

// The old gateway read a JSON login body as a form and bound the customer
// it found there, while the bank's JSON reader logged in another: the
// attacker then confirmed with their own code what the bank executed as the
// victim. A body the gateway cannot read as the bank does is refused now,
// with or without a session, in JSON and on the customer's page.
func TestLoginUnreadableBodyRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	gwEnrolled(e, "S001", "U001")
	fresh := e.customer("S001", "U001")
	req := loginRequest(http.MethodPost, "/login?service_id=S001", "application/json",
		`{"user_id":"U002","password":"demo","note":"&user_id=U001&"}`)
	req.Header.Set("Accept", "application/json")
	res, body := fresh.do(req)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	const msg = "otpgate: The login form could not be read unambiguously; send it as application/x-www-form-urlencoded."
	if res.StatusCode != http.StatusBadRequest || out["error"] != "login_unreadable" || !strings.HasPrefix(out["message"].(string), msg) {
		t.Fatalf("JSON login: status %d %s; want 400 login_unreadable", res.StatusCode, body)
	}
	if len(res.Cookies()) != 0 {
		t.Fatalf("JSON login reached the bank: cookies %v", res.Cookies())
	}

	for _, tc := range []struct {
		name, contentType, body, lang, want string
	}{
		{"raw byte", formType, "service_id=S001&user_id=U002&password=\xe3\x81\x82", "ja", "ログインの入力内容を一通りに読み取れない"},
		{"Shift_JIS", formType + "; charset=Shift_JIS", victimLogin.Encode(), "en", "could not be read unambiguously"},
		{"no Content-Type", "", victimLogin.Encode(), "en", "could not be read unambiguously"},
		{"over 64 KiB", formType, victimLogin.Encode() + "&pad=" + strings.Repeat("x", 64<<10), "ja", "ログインの入力内容"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := loginRequest(http.MethodPost, "/login", tc.contentType, tc.body)
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Accept-Language", tc.lang)
			res, page := fresh.do(req)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(page, tc.want) || !strings.Contains(page, `href="/login"`) {
				t.Fatalf("status %d; want 400 saying %q with a link to the login page\n%s", res.StatusCode, tc.want, page)
			}
		})
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries", n)
	}
}

var loginField = regexp.MustCompile(`<input type="[a-z]+" name="([a-z_]+)"`)

// What a browser sends from the bank's own login page still logs in and
// binds: the form's action and fields, urlencoded, with or without a
// charset parameter.
func TestLoginBrowserFormBinds(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, ct := range []string{formType, formType + "; charset=UTF-8"} {
		c := e.customer("S002", "U101")
		res, page := c.get("/login")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("login page: status %d", res.StatusCode)
		}
		form := url.Values{}
		for _, m := range loginField.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], map[string]string{"service_id": "S002", "user_id": "U101", "password": "demo"}[m[1]])
		}
		req := loginRequest(http.MethodPost, regexpAction(t, page), ct, form.Encode())
		req.Header.Set("Origin", gatewayURL)
		res, body := c.do(req)
		// No token yet, and OTP required: the login lands on STEP 1.
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=login" {
			t.Fatalf("%s: status %d; want 303 to the token page\n%s", ct, res.StatusCode, body)
		}
		b, found, err := e.gw().sessions.Lookup(context.Background(), gwSession(c))
		if err != nil || !found || b.Service != "S002" || b.User != "U101" {
			t.Fatalf("%s: binding %+v, %v, %v; want S002/U101", ct, b, found, err)
		}
		res, _ = c.get("/menu")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("menu: status %d", res.StatusCode)
		}
	}
}
