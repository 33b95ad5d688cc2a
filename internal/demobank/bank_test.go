package demobank

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const formType = "application/x-www-form-urlencoded"

func serve(b *Bank, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, r)
	return rec
}

func newReq(method, target, contentType, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func withSession(r *http.Request, sid string) *http.Request {
	r.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: sid})
	return r
}

// login logs in and returns the session ID the bank set.
func login(t *testing.T, b *Bank, service, user string) string {
	t.Helper()
	form := url.Values{"service_id": {service}, "user_id": {user}, "password": {"demo"}}
	rec := serve(b, newReq(http.MethodPost, "/login", formType, form.Encode()))
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login: status %d, want 303", rec.Code)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "JSESSIONID" {
			return c.Value
		}
	}
	t.Fatal("login: no JSESSIONID cookie")
	return ""
}

func multipartBody(t *testing.T, fields map[string]string, fileField, filename string, content []byte) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if fileField != "" {
		fw, err := mw.CreateFormFile(fileField, filename)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(content)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.String()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestLogin(t *testing.T) {
	tests := []struct {
		name                      string
		service, user, password   string
		wantStatus                int
		wantCookie, wantErrorText bool
	}{
		{"U001", "S001", "U001", "demo", http.StatusSeeOther, true, false},
		{"U002", "S001", "U002", "demo", http.StatusSeeOther, true, false},
		{"U101", "S002", "U101", "demo", http.StatusSeeOther, true, false},
		{"wrong password", "S001", "U001", "nope", http.StatusOK, false, true},
		{"empty password", "S001", "U001", "", http.StatusOK, false, true},
		{"user of another service", "S002", "U001", "demo", http.StatusOK, false, true},
		{"unknown user", "S001", "U999", "demo", http.StatusOK, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			form := url.Values{"service_id": {tt.service}, "user_id": {tt.user}, "password": {tt.password}}
			rec := serve(b, newReq(http.MethodPost, "/login", formType, form.Encode()))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			var sc *http.Cookie
			for _, c := range rec.Result().Cookies() {
				if c.Name == "JSESSIONID" {
					sc = c
				}
			}
			if (sc != nil) != tt.wantCookie {
				t.Fatalf("cookie set = %v, want %v", sc != nil, tt.wantCookie)
			}
			if sc != nil {
				if loc := rec.Header().Get("Location"); loc != "/menu" {
					t.Errorf("Location %q, want /menu", loc)
				}
				if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(sc.Value) {
					t.Errorf("session ID %q is not 128-bit hex", sc.Value)
				}
				if sc.Path != "/" || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode {
					t.Errorf("cookie attributes: %+v", sc)
				}
				menu := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sc.Value))
				if menu.Code != http.StatusOK {
					t.Errorf("menu with new session: status %d", menu.Code)
				}
			}
			if tt.wantErrorText && !strings.Contains(rec.Body.String(), "正しくありません") {
				t.Error("login page shows no error message")
			}
		})
	}
}

func TestLoginPages(t *testing.T) {
	b := New()
	for _, p := range []string{"/", "/login", "/LOGIN/"} {
		rec := serve(b, newReq(http.MethodGet, p, "", ""))
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d", p, rec.Code)
		}
		for _, f := range []string{`name="service_id"`, `name="user_id"`, `name="password"`, `action="/login"`} {
			if !strings.Contains(body, f) {
				t.Errorf("GET %s: page lacks %s", p, f)
			}
		}
	}
}

// The login servlet reads its fields whatever the method and body type, as
// legacy ones did: the gateway must watch every such request as a login.
func TestLoginAnyMethodAndBody(t *testing.T) {
	creds := url.Values{"service_id": {"S001"}, "user_id": {"U002"}, "password": {"demo"}}
	mpType, mpBody := multipartBody(t, map[string]string{"service_id": "S001", "user_id": "U002", "password": "demo"}, "", "", nil)
	for _, tc := range []struct {
		name, method, target, contentType, body string
	}{
		{"GET with the query", http.MethodGet, "/login?" + creds.Encode(), "", ""},
		{"HEAD with the query", http.MethodHead, "/LOGIN/?" + creds.Encode(), "", ""},
		{"PUT form", http.MethodPut, "/login", formType, creds.Encode()},
		{"PATCH form at the root", http.MethodPatch, "/", formType, creds.Encode()},
		{"POST JSON", http.MethodPost, "/login", "application/json", `{"service_id":"S001","user_id":"U002","password":"demo"}`},
		{"POST multipart", http.MethodPost, "/login", mpType, mpBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			rec := serve(b, newReq(tc.method, tc.target, tc.contentType, tc.body))
			if rec.Code != http.StatusSeeOther {
				t.Fatalf("status %d, want 303", rec.Code)
			}
			var sid string
			for _, c := range rec.Result().Cookies() {
				if c.Name == "JSESSIONID" {
					sid = c.Value
				}
			}
			menu := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sid))
			if menu.Code != http.StatusOK || !strings.Contains(menu.Body.String(), "佐藤 花子") {
				t.Fatalf("menu with the new session: status %d; want U002's menu", menu.Code)
			}
		})
	}
	// Without the fields, any method but POST shows the page.
	rec := serve(New(), newReq(http.MethodGet, "/login?lang=ja", "", ""))
	if rec.Code != http.StatusOK || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("GET /login?lang=ja: status %d, cookies %v; want the page", rec.Code, rec.Result().Cookies())
	}
}

// An ID the browser brings to the login must not become the session (fixation).
func TestLoginIssuesNewSession(t *testing.T) {
	b := New()
	first := login(t, b, "S001", "U001")
	form := url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"demo"}}
	for _, planted := range []string{first, "0123456789abcdef0123456789abcdef"} {
		r := withSession(newReq(http.MethodPost, "/login;jsessionid="+planted, formType, form.Encode()), planted)
		rec := serve(b, r)
		var got string
		for _, c := range rec.Result().Cookies() {
			if c.Name == "JSESSIONID" {
				got = c.Value
			}
		}
		if got == "" || got == planted {
			t.Errorf("login with planted %q issued %q", planted, got)
		}
	}
	unknown := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), "0123456789abcdef0123456789abcdef"))
	if unknown.Code != http.StatusSeeOther {
		t.Errorf("planted ID became a session: status %d", unknown.Code)
	}
}

func TestLogout(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		t.Run(method, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S001", "U001")
			rec := serve(b, withSession(newReq(method, "/logout", "", ""), sid))
			if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
				t.Fatalf("logout: %d %q", rec.Code, rec.Header().Get("Location"))
			}
			var expired bool
			for _, c := range rec.Result().Cookies() {
				if c.Name == "JSESSIONID" && c.MaxAge < 0 && c.Value == "" {
					expired = true
				}
			}
			if !expired {
				t.Error("logout does not expire the cookie")
			}
			after := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sid))
			if after.Code != http.StatusSeeOther {
				t.Errorf("session still valid after logout: %d", after.Code)
			}
		})
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	b := New()
	now := time.Date(2025, 4, 1, 9, 0, 0, 0, time.Local)
	b.now = func() time.Time { return now }
	sid := login(t, b, "S001", "U001")
	now = now.Add(29 * time.Minute)
	if rec := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sid)); rec.Code != http.StatusOK {
		t.Fatalf("after 29 minutes: %d", rec.Code)
	}
	now = now.Add(31 * time.Minute)
	if rec := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sid)); rec.Code != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d, want 303", rec.Code)
	}
}

func TestPagesNeedSession(t *testing.T) {
	paths := []string{"/menu", "/transfer", "/payment", "/bulk", "/payroll", "/profile",
		"/transfer/execute", "/payment/execute", "/bulk/execute", "/payroll/execute", "/profile/update"}
	b := New()
	sid := login(t, b, "S001", "U001")
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			for _, r := range []*http.Request{
				newReq(http.MethodGet, p, "", ""),
				newReq(http.MethodPost, p, formType, "to_bank=x&to_account=1&amount=1&payee=x&email=a@b&phone=1"),
				withSession(newReq(http.MethodPost, p, formType, "amount=1"), "ffffffffffffffffffffffffffffffff"),
			} {
				rec := serve(b, r)
				if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login" {
					t.Errorf("%s %s without session: %d %q", r.Method, p, rec.Code, rec.Header().Get("Location"))
				}
			}
			if !strings.Contains(p, "/execute") && !strings.Contains(p, "/update") {
				rec := serve(b, withSession(newReq(http.MethodGet, p, "", ""), sid))
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<form") {
					t.Errorf("GET %s with session: %d", p, rec.Code)
				}
			}
		})
	}
	if n := len(b.Ledger()); n != 0 {
		t.Errorf("ledger has %d entries, want 0", n)
	}
}

func TestFormPagesPostToEndpoints(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	tests := []struct{ page, want string }{
		{"/transfer", `action="/transfer/execute"`},
		{"/payment", `action="/payment/execute"`},
		{"/bulk", `enctype="multipart/form-data"`},
		{"/payroll", `action="/payroll/execute"`},
		{"/profile", `value="yamada@sakura-shoji.example.jp"`},
		{"/menu", `href="/transfer"`},
	}
	for _, tt := range tests {
		body := serve(b, withSession(newReq(http.MethodGet, tt.page, "", ""), sid)).Body.String()
		if !strings.Contains(body, tt.want) {
			t.Errorf("%s lacks %s", tt.page, tt.want)
		}
		if strings.Contains(body, "<script") {
			t.Errorf("%s has script", tt.page)
		}
	}
}

func TestEndpoints(t *testing.T) {
	csv := []byte("1,0001,テスト,21,000,給与\n2,0005,サンプル,1,234567,10000\n")
	bulkType, bulkBody := multipartBody(t, nil, "file", "sogo.csv", csv)
	payType, payBody := multipartBody(t, map[string]string{"note": "4月分"}, "file", "kyuyo.csv", csv)
	tests := []struct {
		name        string
		target      string
		contentType string
		body        string
		wantOp      string
		wantParams  map[string]string
		wantOnPage  []string
	}{
		{
			name: "transfer", target: "/transfer/execute", contentType: formType,
			body:   url.Values{"to_bank": {"みずほ銀行"}, "to_account": {"普通 1234567"}, "amount": {"50000"}}.Encode(),
			wantOp: "transfer", wantParams: map[string]string{"to_bank": "みずほ銀行", "to_account": "普通 1234567", "amount": "50000"},
			wantOnPage: []string{"みずほ銀行", "普通 1234567", "50000"},
		},
		{
			name: "payment", target: "/payment/execute", contentType: formType,
			body:   url.Values{"payee": {"東京電力"}, "amount": {"12345"}}.Encode(),
			wantOp: "bill_payment", wantParams: map[string]string{"payee": "東京電力", "amount": "12345"},
			wantOnPage: []string{"東京電力", "12345"},
		},
		{
			name: "bulk", target: "/bulk/execute", contentType: bulkType, body: bulkBody,
			wantOp:     "bulk_transfer",
			wantParams: map[string]string{"kind": "bulk", "file": "sogo.csv", "file_size": fmt.Sprint(len(csv)), "file_sha256": sha(csv)},
			wantOnPage: []string{"sogo.csv", sha(csv)},
		},
		{
			name: "payroll", target: "/payroll/execute", contentType: payType, body: payBody,
			wantOp:     "bulk_transfer",
			wantParams: map[string]string{"kind": "payroll", "note": "4月分", "file": "kyuyo.csv", "file_size": fmt.Sprint(len(csv)), "file_sha256": sha(csv)},
			wantOnPage: []string{"kyuyo.csv", "給与・賞与振込"},
		},
		{
			name: "profile", target: "/profile/update", contentType: formType,
			body:   url.Values{"email": {"new@example.jp"}, "phone": {"090-1111-2222"}}.Encode(),
			wantOp: "user_change", wantParams: map[string]string{"email": "new@example.jp", "phone": "090-1111-2222"},
			wantOnPage: []string{"new@example.jp", "090-1111-2222"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S001", "U002")
			before := time.Now()
			rec := serve(b, withSession(newReq(http.MethodPost, tt.target, tt.contentType, tt.body), sid))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200\n%s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			body := rec.Body.String()
			for _, s := range append(tt.wantOnPage, "R000001") {
				if !strings.Contains(body, s) {
					t.Errorf("completion page lacks %q", s)
				}
			}
			l := b.Ledger()
			if len(l) != 1 {
				t.Fatalf("ledger has %d entries, want 1", len(l))
			}
			e := l[0]
			if e.Op != tt.wantOp || e.Service != "S001" || e.User != "U002" || e.Method != "POST" || e.Receipt != "R000001" {
				t.Errorf("entry %+v", e)
			}
			if e.At.Before(before) || e.At.After(time.Now()) {
				t.Errorf("entry time %v", e.At)
			}
			if fmt.Sprint(e.Params) != fmt.Sprint(tt.wantParams) {
				t.Errorf("params %v\nwant %v", e.Params, tt.wantParams)
			}
		})
	}
}

// The completion page is shown at the executing URL; its relative links must lead
// back into the site from there.
func TestCompletionPageRelativeLinks(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	csvType, csvBody := multipartBody(t, nil, "file", "a.csv", []byte("x"))
	reqs := map[string]*http.Request{
		"/transfer/execute": newReq(http.MethodPost, "/transfer/execute", formType, "to_bank=a&to_account=b&amount=1"),
		"/payment/execute":  newReq(http.MethodPost, "/payment/execute", formType, "payee=a&amount=1"),
		"/bulk/execute":     newReq(http.MethodPost, "/bulk/execute", csvType, csvBody),
		"/profile/update":   newReq(http.MethodPost, "/profile/update", formType, "email=a@b.jp&phone=1"),
	}
	hrefRE := regexp.MustCompile(`href="([^"]+)"`)
	for at, r := range reqs {
		body := serve(b, withSession(r, sid)).Body.String()
		if !strings.Contains(body, `href="../menu"`) {
			t.Errorf("%s: no relative link ../menu", at)
		}
		base, _ := url.Parse("http://bank.example" + at)
		for _, m := range hrefRE.FindAllStringSubmatch(body, -1) {
			ref, _ := url.Parse(m[1])
			u := base.ResolveReference(ref)
			rec := serve(b, withSession(newReq(http.MethodGet, u.Path, "", ""), sid))
			if rec.Code != http.StatusOK {
				t.Errorf("%s: link %s resolves to %s: status %d", at, m[1], u.Path, rec.Code)
			}
		}
	}
}

func TestMissingFields(t *testing.T) {
	emptyFileType, emptyFileBody := multipartBody(t, nil, "file", "", nil)
	otherFileType, otherFileBody := multipartBody(t, nil, "attachment", "a.csv", []byte("x"))
	tests := []struct {
		name, target, contentType, body string
	}{
		{"transfer without amount", "/transfer/execute", formType, "to_bank=a&to_account=b"},
		{"transfer with blank amount", "/transfer/execute", formType, "to_bank=a&to_account=b&amount=+++"},
		{"transfer empty", "/transfer/execute", "", ""},
		{"payment without payee", "/payment/execute", formType, "amount=1"},
		{"bulk without body", "/bulk/execute", "", ""},
		{"bulk with no file chosen", "/bulk/execute", emptyFileType, emptyFileBody},
		{"payroll with file in another field", "/payroll/execute", otherFileType, otherFileBody},
		{"bulk with file as a plain parameter", "/bulk/execute?file=a.csv", "", ""},
		{"profile without phone", "/profile/update", formType, "email=a@b.jp"},
		{"JSON that is not an object", "/transfer/execute", "application/json", `["to_bank","a"]`},
		{"broken JSON", "/transfer/execute", "application/json", `{"to_bank":`},
		{"broken multipart", "/bulk/execute", "multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S001", "U001")
			rec := serve(b, withSession(newReq(http.MethodPost, tt.target, tt.contentType, tt.body), sid))
			if rec.Code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", rec.Code)
			}
			if n := len(b.Ledger()); n != 0 {
				t.Errorf("ledger has %d entries, want 0", n)
			}
		})
	}
}

// leniencyCase is one spelling of a transfer that the bank must execute.
type leniencyCase struct {
	name       string
	req        func(sid string) *http.Request // adds the session itself
	wantMethod string
	wantParams map[string]string // must be exactly these
}

const transferForm = "to_bank=%E3%81%BF%E3%81%9A%E3%81%BB&to_account=1234567&amount=10000"

var transferParams = map[string]string{"to_bank": "みずほ", "to_account": "1234567", "amount": "10000"}

// cookieReq is a request carrying the session in the JSESSIONID cookie.
func cookieReq(method, target, contentType, body string) func(string) *http.Request {
	return func(sid string) *http.Request {
		return withSession(newReq(method, target, contentType, body), sid)
	}
}

func leniencyCases(t *testing.T) []leniencyCase {
	mpType, mpBody := multipartBody(t, map[string]string{"to_bank": "みずほ", "to_account": "1234567", "amount": "10000"}, "", "", nil)
	post := func(target string) func(string) *http.Request {
		return cookieReq(http.MethodPost, target, formType, transferForm)
	}
	return []leniencyCase{
		{"canonical", post("/transfer/execute"), "POST", transferParams},
		{"upper case", post("/TRANSFER/EXECUTE"), "POST", transferParams},
		{"mixed case", post("/Transfer/eXecute"), "POST", transferParams},
		{"trailing slash", post("/transfer/execute/"), "POST", transferParams},
		{"trailing dot", post("/transfer/execute."), "POST", transferParams},
		{"trailing dots, slashes and spaces", post("/transfer/execute.%20/./"), "POST", transferParams},
		{"repeated slashes", post("//transfer///execute"), "POST", transferParams},
		{"dot segments", post("/menu/../transfer/./execute"), "POST", transferParams},
		{"encoded dot segments", post("/menu/%2e%2E/transfer/%2e/execute"), "POST", transferParams},
		{"encoded letters", post("/%74ransfer/%45xecute"), "POST", transferParams},
		{"encoded slash", post("/transfer%2Fexecute"), "POST", transferParams},
		{"double-encoded slash", post("/transfer%252Fexecute"), "POST", transferParams},
		{"triple-encoded letter", post("/transfer/%252565xecute"), "POST", transferParams},
		{"encoded backslash", post("/transfer%5Cexecute"), "POST", transferParams},
		{"backslash", post(`/transfer\execute`), "POST", transferParams},
		{"path parameters", post("/transfer;a=b/execute;type=x"), "POST", transferParams},
		{"NUL truncation", post("/transfer/execute%00.gif"), "POST", transferParams},
		{"double-encoded NUL", post("/transfer/execute%2500.jsp"), "POST", transferParams},
		{"absolute-form target", post("http://bank.example/transfer/execute"), "POST", transferParams},
		{"jsessionid in URL, no cookie", func(sid string) *http.Request {
			return newReq(http.MethodPost, "/transfer/execute;jsessionid="+sid, formType, transferForm)
		}, "POST", transferParams},
		{"JSESSIONID in upper case in a middle segment", func(sid string) *http.Request {
			return newReq(http.MethodPost, "/Transfer;JSESSIONID="+sid+"/Execute/", formType, transferForm)
		}, "POST", transferParams},
		{"encoded jsessionid", func(sid string) *http.Request {
			return newReq(http.MethodPost, "/transfer/execute%3Bjsessionid%3D"+sid, formType, transferForm)
		}, "POST", transferParams},
		{"stale cookie, valid jsessionid in URL", func(sid string) *http.Request {
			return withSession(newReq(http.MethodPost, "/transfer/execute;jsessionid="+sid, formType, transferForm), "00000000000000000000000000000000")
		}, "POST", transferParams},
		{"GET with query", cookieReq(http.MethodGet, "/transfer/execute?"+transferForm, "", ""), "GET", transferParams},
		{"HEAD with query", cookieReq(http.MethodHead, "/transfer/execute?"+transferForm, "", ""), "HEAD", transferParams},
		{"PUT", cookieReq(http.MethodPut, "/transfer/execute", formType, transferForm), "PUT", transferParams},
		{"PATCH", cookieReq(http.MethodPatch, "/transfer/execute", formType, transferForm), "PATCH", transferParams},
		{"DELETE with query", cookieReq(http.MethodDelete, "/transfer/execute?"+transferForm, "", ""), "DELETE", transferParams},
		{"lower-case method", cookieReq("post", "/transfer/execute", formType, transferForm), "POST", transferParams},
		{"X-HTTP-Method-Override", func(sid string) *http.Request {
			r := withSession(newReq(http.MethodPost, "/transfer/execute", formType, transferForm), sid)
			r.Header.Set("X-HTTP-Method-Override", "put")
			return r
		}, "PUT", transferParams},
		{"X-HTTP-Method", func(sid string) *http.Request {
			r := withSession(newReq(http.MethodPost, "/transfer/execute", formType, transferForm), sid)
			r.Header.Set("X-HTTP-Method", "DELETE")
			return r
		}, "DELETE", transferParams},
		{"X-Method-Override on GET", func(sid string) *http.Request {
			r := withSession(newReq(http.MethodGet, "/transfer/execute?"+transferForm, "", ""), sid)
			r.Header.Set("X-Method-Override", "PATCH")
			return r
		}, "PATCH", transferParams},
		{"override turns OPTIONS into POST", func(sid string) *http.Request {
			r := withSession(newReq(http.MethodOptions, "/transfer/execute?"+transferForm, "", ""), sid)
			r.Header.Set("X-HTTP-Method-Override", "POST")
			return r
		}, "POST", transferParams},
		{"_method in body", cookieReq(http.MethodPost, "/transfer/execute", formType, transferForm+"&_method=put"), "PUT", transferParams},
		{"_method in query", cookieReq(http.MethodPost, "/transfer/execute?_method=Delete", formType, transferForm), "DELETE", transferParams},
		{"query and body together", cookieReq(http.MethodPost, "/transfer/execute?to_bank=%E3%81%BF%E3%81%9A%E3%81%BB", formType, "to_account=1234567&amount=10000"), "POST", transferParams},
		{"semicolon kept in query value", cookieReq(http.MethodPost, "/transfer/execute?memo=a;b", formType, transferForm), "POST",
			map[string]string{"to_bank": "みずほ", "to_account": "1234567", "amount": "10000", "memo": "a;b"}},
		{"form with charset", cookieReq(http.MethodPost, "/transfer/execute", formType+"; charset=UTF-8", transferForm), "POST", transferParams},
		{"form in ISO-8859-1", cookieReq(http.MethodPost, "/transfer/execute", formType+"; charset=ISO-8859-1", "to_bank=M%FCnchen&to_account=1234567&amount=10000"), "POST",
			map[string]string{"to_bank": "München", "to_account": "1234567", "amount": "10000"}},
		{"upper-case content type", cookieReq(http.MethodPost, "/transfer/execute", "Application/X-WWW-Form-Urlencoded", transferForm), "POST", transferParams},
		{"malformed escape left as is", cookieReq(http.MethodPost, "/transfer/execute", formType, "to_bank=A%zzB&to_account=1234567&amount=10000"), "POST",
			map[string]string{"to_bank": "A%zzB", "to_account": "1234567", "amount": "10000"}},
		{"JSON body", cookieReq(http.MethodPost, "/transfer/execute", "application/json", `{"to_bank":"みずほ","to_account":"1234567","amount":"10000"}`), "POST", transferParams},
		{"JSON with number, array and null", cookieReq(http.MethodPut, "/transfer/execute", "application/json; charset=utf-8", `{"to_bank":["みずほ","りそな"],"to_account":1234567,"amount":10000,"memo":null,"x":{"y":1}}`), "PUT", transferParams},
		{"vendor JSON type", cookieReq(http.MethodPost, "/transfer/execute", "application/vnd.bank+json", `{"to_bank":"みずほ","to_account":"1234567","amount":"10000"}`), "POST", transferParams},
		{"JSON with _method", cookieReq(http.MethodPost, "/transfer/execute", "application/json", `{"_method":"patch","to_bank":"みずほ","to_account":"1234567","amount":"10000"}`), "PATCH", transferParams},
		{"multipart fields", cookieReq(http.MethodPost, "/transfer/execute", mpType, mpBody), "POST", transferParams},
		{"everything at once", func(sid string) *http.Request {
			r := newReq(http.MethodPost, "//TRANSFER;jsessionid="+sid+"/%2565xecute%5C.", formType, transferForm+"&_method=patch")
			return r
		}, "PATCH", transferParams},
	}
}

func TestLeniency(t *testing.T) {
	for _, tt := range leniencyCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S002", "U101")
			rec := serve(b, tt.req(sid))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, want 200\n%s", rec.Code, rec.Body)
			}
			l := b.Ledger()
			if len(l) != 1 {
				t.Fatalf("ledger has %d entries, want 1", len(l))
			}
			e := l[0]
			if e.Op != "transfer" || e.Service != "S002" || e.User != "U101" || e.Method != tt.wantMethod {
				t.Errorf("entry %s %s/%s %s, want transfer S002/U101 %s", e.Op, e.Service, e.User, e.Method, tt.wantMethod)
			}
			if fmt.Sprint(e.Params) != fmt.Sprint(tt.wantParams) {
				t.Errorf("params %v\nwant %v", e.Params, tt.wantParams)
			}
		})
	}
}

// Each of these looks like a transfer but must not execute one.
func TestNotExecuted(t *testing.T) {
	tests := []struct {
		name       string
		req        func(sid string) *http.Request
		wantStatus int
	}{
		{"OPTIONS", cookieReq(http.MethodOptions, "/transfer/execute?"+transferForm, "", ""), http.StatusMethodNotAllowed},
		{"TRACE", cookieReq(http.MethodTrace, "/transfer/execute?"+transferForm, "", ""), http.StatusMethodNotAllowed},
		{"override to an unknown method", func(sid string) *http.Request {
			r := withSession(newReq(http.MethodPost, "/transfer/execute", formType, transferForm), sid)
			r.Header.Set("X-HTTP-Method-Override", "FOO")
			return r
		}, http.StatusMethodNotAllowed},
		{"dot-dot leaves the endpoint", cookieReq(http.MethodPost, "/transfer/execute/..", formType, transferForm), http.StatusOK},
		{"encoded dot-dot leaves the endpoint", cookieReq(http.MethodPost, "/transfer/execute/%252e%252e", formType, transferForm), http.StatusOK},
		{"other path", cookieReq(http.MethodPost, "/transfer/executed", formType, transferForm), http.StatusNotFound},
		{"space inside the path", cookieReq(http.MethodPost, "/transfer%20/execute", formType, transferForm), http.StatusNotFound},
		{"encoded question mark is not a query", cookieReq(http.MethodPost, "/transfer/execute%3Fx=1", formType, transferForm), http.StatusNotFound},
		{"jsessionid in the query is not a session", func(sid string) *http.Request {
			return newReq(http.MethodPost, "/transfer/execute?jsessionid="+sid, formType, transferForm)
		}, http.StatusSeeOther},
		{"too deeply encoded", cookieReq(http.MethodPost, "/transfer/%"+strings.Repeat("25", 40)+"65xecute", formType, transferForm), http.StatusBadRequest},
		{"unknown content type carries no parameters", cookieReq(http.MethodPost, "/transfer/execute", "text/plain", transferForm), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S001", "U001")
			rec := serve(b, tt.req(sid))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if n := len(b.Ledger()); n != 0 {
				t.Errorf("ledger has %d entries, want 0", n)
			}
		})
	}
}

func TestFirstValueWins(t *testing.T) {
	jsonDup := `{"to_bank":"A","to_account":"1","amount":"100","amount":"999"}`
	mpType, mpBody := multipartBody(t, map[string]string{"amount": "999", "to_account": "1"}, "", "", nil)
	tests := []struct {
		name, target, contentType, body string
	}{
		{"query before body", "/transfer/execute?amount=100", formType, "to_bank=A&to_account=1&amount=999"},
		{"first in query", "/transfer/execute?amount=100&amount=999&to_bank=A&to_account=1", "", ""},
		{"first in body", "/transfer/execute", formType, "to_bank=A&to_account=1&amount=100&amount=999"},
		{"first JSON member", "/transfer/execute", "application/json", jsonDup},
		{"query before multipart", "/transfer/execute?amount=100&to_bank=A", mpType, mpBody},
		{"query before JSON", "/transfer/execute?amount=100", "application/json", `{"to_bank":"A","to_account":"1","amount":"999"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			sid := login(t, b, "S001", "U001")
			rec := serve(b, withSession(newReq(http.MethodPost, tt.target, tt.contentType, tt.body), sid))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			e := b.Ledger()[0]
			if e.Params["amount"] != "100" || e.Params["to_bank"] != "A" || e.Params["to_account"] != "1" {
				t.Errorf("params %v, want amount 100", e.Params)
			}
		})
	}
}

// A file part wins over a plain parameter of the same name, and the endpoint over a
// "kind" parameter: these are what the servlet acts on.
func TestUploadRecorded(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	content := []byte("header\r\ndata\r\n")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "bulk")
	fw, _ := mw.CreateFormFile("file", `C:\Documents and Settings\yamada\kyuyo.csv`)
	fw.Write(content)
	fw, _ = mw.CreateFormFile("file", "second.csv")
	fw.Write([]byte("ignored"))
	mw.Close()
	r := withSession(newReq(http.MethodPost, "/payroll/execute?file=decoy.csv", mw.FormDataContentType(), buf.String()), sid)
	if rec := serve(b, r); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	want := map[string]string{"kind": "payroll", "file": "kyuyo.csv", "file_size": fmt.Sprint(len(content)), "file_sha256": sha(content)}
	if got := b.Ledger()[0].Params; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("params %v\nwant %v", got, want)
	}
}

func TestProfileUpdateShowsOnNextVisit(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	serve(b, withSession(newReq(http.MethodPost, "/profile/update", formType, "email=new%40example.jp&phone=090-0000-0000"), sid))
	body := serve(b, withSession(newReq(http.MethodGet, "/profile", "", ""), sid)).Body.String()
	if !strings.Contains(body, `value="new@example.jp"`) || !strings.Contains(body, `value="090-0000-0000"`) {
		t.Error("profile page does not show the changed values")
	}
	other := login(t, b, "S001", "U002")
	body = serve(b, withSession(newReq(http.MethodGet, "/profile", "", ""), other)).Body.String()
	if strings.Contains(body, "new@example.jp") {
		t.Error("another user's profile changed")
	}
}

func TestLedgerJSON(t *testing.T) {
	b := New()
	rec := serve(b, newReq(http.MethodGet, "/ledger.json", "", ""))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("empty ledger: %d %q", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}

	sid := login(t, b, "S001", "U001")
	serve(b, withSession(newReq(http.MethodPost, "/transfer/execute", formType, "to_bank=A&to_account=1&amount=100"), sid))
	serve(b, withSession(newReq(http.MethodGet, "/payment/execute?payee=P&amount=5", "", ""), sid))

	rec = serve(b, newReq(http.MethodGet, "/ledger.json", "", ""))
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("ledger.json: %v\n%s", err, rec.Body)
	}
	if len(raw) != 2 {
		t.Fatalf("%d entries, want 2", len(raw))
	}
	for _, k := range []string{"op", "service", "user", "method", "params", "at", "receipt"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("entry lacks %q", k)
		}
	}
	var entries []Entry
	json.Unmarshal(rec.Body.Bytes(), &entries)
	if entries[0].Receipt != "R000001" || entries[1].Receipt != "R000002" ||
		entries[0].Op != "transfer" || entries[1].Op != "bill_payment" || entries[1].Method != "GET" ||
		entries[1].Params["payee"] != "P" || entries[0].At.IsZero() {
		t.Errorf("entries %+v", entries)
	}
	if rec := serve(b, newReq(http.MethodPost, "/ledger.json", "", "")); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ledger.json: %d", rec.Code)
	}
}

func TestLedgerIsACopy(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	serve(b, withSession(newReq(http.MethodPost, "/payment/execute", formType, "payee=P&amount=5"), sid))
	l := b.Ledger()
	l[0].Params["amount"] = "999999"
	l[0].Op = "changed"
	if e := b.Ledger()[0]; e.Params["amount"] != "5" || e.Op != "bill_payment" {
		t.Errorf("ledger changed through a copy: %+v", e)
	}
}

func TestConcurrentReceipts(t *testing.T) {
	b := New()
	sids := []string{login(t, b, "S001", "U001"), login(t, b, "S001", "U002"), login(t, b, "S002", "U101")}
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			serve(b, withSession(newReq(http.MethodPost, "/payment/execute", formType, fmt.Sprintf("payee=P&amount=%d", i)), sids[i%len(sids)]))
		})
	}
	wg.Wait()
	l := b.Ledger()
	if len(l) != n {
		t.Fatalf("%d entries, want %d", len(l), n)
	}
	for i, e := range l {
		if want := fmt.Sprintf("R%06d", i+1); e.Receipt != want {
			t.Errorf("entry %d receipt %s, want %s", i, e.Receipt, want)
		}
	}
}

func TestUsers(t *testing.T) {
	us := Users()
	var got []string
	for _, u := range us {
		got = append(got, u.ServiceID+"/"+u.UserID+"/"+u.Password)
		if u.Name == "" || u.Company == "" {
			t.Errorf("%s/%s has no display name", u.ServiceID, u.UserID)
		}
	}
	if want := "[S001/U001/demo S001/U002/demo S002/U101/demo]"; fmt.Sprint(got) != want {
		t.Errorf("users %v, want %s", got, want)
	}
	us[0].Password = "changed"
	if Users()[0].Password != "demo" {
		t.Error("Users returns shared state")
	}
}

func TestNotFound(t *testing.T) {
	b := New()
	if rec := serve(b, newReq(http.MethodGet, "/admin", "", "")); rec.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", rec.Code)
	}
}
