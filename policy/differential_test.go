package policy_test

// The differential fuzz target: it generates requests and compares the
// gateway's decision with what independent lenient readers execute. The
// demo bank's own request reader is one, executing for real; three more
// readers, written here and deliberately unlike the gateway's, read only the
// path (decoding exactly twice, IIS-style, and Java-trim-style). A reader
// that executes a protected operation the gateway would pass is a finding.
// Run it longer than CI does with
//
//	go test -run '^$' -fuzz FuzzDifferential -fuzztime 10m ./policy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/otpgate/otpgate/internal/demobank"
	"github.com/otpgate/otpgate/policy"
)

// demoRules are the rules of Caddyfile.example.
var demoRules = []policy.Rule{
	{Kind: policy.Transfer, Paths: []string{"/transfer/execute"}, Show: []policy.Field{{Name: "to_bank"}, {Name: "to_account"}, {Name: "amount"}}},
	{Kind: policy.BillPayment, Paths: []string{"/payment/execute"}, Show: []policy.Field{{Name: "payee"}, {Name: "amount"}}},
	{Kind: policy.BulkTransfer, Name: "bulk", Paths: []string{"/bulk/execute", "/payroll/execute"}, Show: []policy.Field{{Name: "file"}}},
	{Kind: policy.TokenManagement, Paths: []string{"/otp/**", "/token/**"}},
	{Kind: policy.UserChange, Paths: []string{"/profile/update"}, Show: []policy.Field{{Name: "email"}, {Name: "phone"}}},
}

// protectedPath reports whether a path, read and lower-cased by a reader,
// is one the demo rules protect.
func protectedPath(p string) bool {
	switch p {
	case "/transfer/execute", "/payment/execute", "/bulk/execute", "/payroll/execute", "/profile/update":
		return true
	}
	return strings.HasPrefix(p, "/otp/") || strings.HasPrefix(p, "/token/")
}

type decision int

const (
	refused decision = iota + 1
	held
	passed
)

func (d decision) String() string { return [...]string{"", "refused", "held", "passed"}[d] }

// gatewayDecision is what caddymodule's ServeHTTP decides for r, before
// identity: refuse an ambiguous path or a body it cannot show, hold a
// protected operation, or pass.
func gatewayDecision(p *policy.Policy, r *http.Request, body []byte) (decision, *policy.Match) {
	view := &policy.Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Header: r.Header, NoBody: r.ContentLength == 0}
	if policy.CheckPath(view.Path) != nil {
		return refused, nil
	}
	if !p.Watches(view) {
		return passed, nil
	}
	if m := p.Classify(view, body); m != nil {
		if m.Verdict == policy.Refused {
			return refused, m // 400 unshowable_request
		}
		return held, m
	}
	return passed, nil
}

// oracle is a demo bank with a logged-in customer.
type oracle struct {
	mu      sync.Mutex
	bank    *demobank.Bank
	session string
}

var (
	theOracle     *oracle
	theOracleOnce sync.Once
)

func newOracle(t testing.TB) *oracle {
	theOracleOnce.Do(func() {
		b := demobank.New()
		req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("service_id=S001&user_id=U001&password=demo"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		for _, c := range rec.Result().Cookies() {
			if c.Name == "JSESSIONID" {
				theOracle = &oracle{bank: b, session: c.Value}
			}
		}
	})
	if theOracle == nil {
		t.Fatal("demo bank login failed")
	}
	return theOracle
}

// execute forwards r to the bank as Caddy's reverse_proxy would (the target
// as url.URL.RequestURI gives it) and returns the ledger entry it made.
func (o *oracle) execute(r *http.Request, body []byte) (demobank.Entry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fwd := r.Clone(r.Context())
	fwd.RequestURI = r.URL.RequestURI()
	fwd.Body = io.NopCloser(bytes.NewReader(body))
	fwd.Header.Set("Cookie", "JSESSIONID="+o.session)
	before := len(o.bank.Ledger())
	o.bank.ServeHTTP(httptest.NewRecorder(), fwd)
	l := o.bank.Ledger()
	if len(l) == before {
		return demobank.Entry{}, false
	}
	return l[len(l)-1], true
}

// parseRequest reads a request as Go's HTTP server (and so Caddy) does; ok
// is false when the server would refuse it before any handler runs.
func parseRequest(method, target, ctype, override string, body []byte) (*http.Request, bool) {
	for _, s := range []string{method, target, ctype, override} {
		if strings.ContainsAny(s, "\r\n") {
			return nil, false
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: bank.example\r\n", method, target)
	if ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", ctype)
	}
	if override != "" {
		fmt.Fprintf(&b, "X-HTTP-Method-Override: %s\r\n", override)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	r, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil || r.URL.Path == "" {
		return nil, false
	}
	return r, true
}

// The independent path readers. Each returns the path it would route,
// lower-cased, or "" if it would refuse the path.
var pathReaders = map[string]func(string) string{
	"decode-twice": func(p string) string {
		return resolve(pctDecode(pctDecode(p)), false)
	},
	"iis": func(p string) string {
		s := p
		for range 10 {
			d := iisDecode(s)
			if d == s {
				break
			}
			s = d
		}
		return resolve(norm.NFKC.String(s), true)
	},
	"java-trim": func(p string) string {
		s := pctDecode(p)
		var segs []string
		for seg := range strings.SplitSeq(s, "/") {
			segs = append(segs, strings.TrimFunc(seg, func(r rune) bool { return r <= ' ' }))
		}
		return resolve(strings.Join(segs, "/"), false)
	},
}

// pctDecode decodes %XX once; malformed escapes stay.
func pctDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := url.PathUnescape(s[i : i+3]); err == nil {
				b.WriteString(v)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// iisDecode decodes %XX, %uXXXX and two-byte overlong UTF-8 once.
func iisDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U'):
			var r rune
			if _, err := fmt.Sscanf(s[i+2:i+6], "%04x", &r); err == nil {
				b.WriteRune(r)
				i += 5
				continue
			}
		case s[i] == '%' && i+2 < len(s):
			if v, err := url.PathUnescape(s[i : i+3]); err == nil {
				b.WriteString(v)
				i += 2
				continue
			}
		case (s[i] == 0xc0 || s[i] == 0xc1) && i+1 < len(s) && s[i+1]&0xc0 == 0x80:
			b.WriteByte((s[i]&1)<<6 | s[i+1]&0x3f)
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolve splits a decoded path, cuts ";" parameters, resolves dot segments
// and lower-cases it; windows also reads "\" as "/", trims trailing dots
// and spaces and drops an NTFS stream suffix.
func resolve(s string, windows bool) string {
	if windows {
		s = strings.ReplaceAll(s, `\`, "/")
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	var out []string
	for seg := range strings.SplitSeq(s, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if windows {
			if i := strings.Index(strings.ToLower(seg), "::$data"); i >= 0 {
				seg = seg[:i]
			}
			if seg != "." && seg != ".." {
				seg = strings.TrimRight(seg, ". ")
			}
		}
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	if !utf8.ValidString(s) && windows {
		return ""
	}
	return strings.ToLower("/" + strings.Join(out, "/"))
}

func FuzzDifferential(f *testing.F) {
	form := "application/x-www-form-urlencoded"
	transfer := []byte("to_bank=0001&to_account=1234567&amount=50000")
	for _, target := range []string{
		// Class 1: encodings the gateway once read differently.
		"/transfer/execute", "/TRANSFER/EXECUTE/", "/transfer/execute;jsessionid=x",
		"/transfer%2fexecute", "/transfer%252fexecute", "/x/%252e%252e/transfer/execute",
		"/x/%25252e%25252e/transfer/execute", "/transfer/execute%2500", "/%74ransfer/execute",
		"/x/%c0%ae%c0%ae/transfer/execute", "/transfer%c0%afexecute", "/transfer%u002fexecute",
		"/%EF%BD%94ransfer/execute", "/transfer/execute%20", "/transfer/execute.", "/transfer/execute::$DATA",
		"/x/%20../transfer/execute", "/x/%09/../transfer/execute", "/transfer\\execute",
		// Class 5: what Tomcat executed through the gateway.
		"/x/.../transfer/execute", "/transfer/x/%3b/%2e%2e/execute", "/x/%2e%2e;/transfer/execute",
		"http://bank.example/transfer/execute", "//transfer/execute",
	} {
		f.Add("POST", target, form, "", transfer)
	}
	// Class 3: bodies the confirm page once showed differently.
	f.Add("POST", "/transfer/execute", "text/plain", "", transfer)
	f.Add("POST", "/transfer/execute", "", "", transfer)
	f.Add("POST", "/transfer/execute", "multipart/form-data; boundary=b", "",
		[]byte("--b\r\nContent-Disposition: form-data; name*=UTF-8''amount\r\n\r\n9999999\r\n--b\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"to_bank\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"to_account\"\r\n\r\n1\r\n--b--\r\n"))
	f.Add("POST", "/transfer/execute", form, "", []byte("to_bank=0001&to_account=%E2%80%AE7654321&amount=50000"))
	f.Add("POST", "/transfer/execute", "application/json", "", []byte(`{"to_bank":"1","to_account":"2","amount":"3","amount":"4"}`))
	f.Add("PUT", "/transfer/execute?to_bank=1&to_account=2&amount=3", "", "", []byte(nil))
	f.Add("GET", "/transfer/execute?to_bank=1&to_account=2&amount=3", "", "POST", []byte(nil))

	p, err := policy.Compile(demoRules)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, ctype, override string, body []byte) {
		r, ok := parseRequest(method, target, ctype, override, body)
		if !ok {
			return
		}
		d, m := gatewayDecision(p, r, body)
		if d == refused {
			return
		}
		fwd := r.URL.EscapedPath()
		for name, read := range pathReaders {
			if rp := read(fwd); d == passed && protectedPath(rp) {
				t.Fatalf("%s %q: the %s reader routes it to %q, the gateway passes it", method, target, name, rp)
			}
		}
		e, executed := newOracle(t).execute(r, body)
		if !executed {
			return
		}
		if d == passed {
			t.Fatalf("%s %q (%s): the demo bank executed %s, the gateway passes it", method, target, ctype, e.Op)
		}
		if m.Doubt {
			return
		}
		for _, f := range m.Fields {
			if f.Name == "file" {
				continue // the bank records a file by its name, size and digest
			}
			if got := e.Params[f.Name]; got != f.Value {
				t.Fatalf("%s %q (%s): the confirm page shows %s=%q without doubt, the bank executed %q", method, target, ctype, f.Name, f.Value, got)
			}
		}
	})
}
