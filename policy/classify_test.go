package policy

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/japanese"
)

var testRules = []Rule{
	{
		Kind:    Transfer,
		Methods: []string{"post"},
		Paths:   []string{"/transfer/execute"},
		Show: []Field{
			{Name: "amount", Label: "金額", LabelEn: "Amount"},
			{Name: "payee", Label: "振込先", LabelEn: "Payee"},
		},
	},
	{
		Name:   "bill",
		Kind:   BillPayment,
		Paths:  []string{"/pay/*/confirm"},
		Params: []Condition{{Name: "step", Value: "execute"}},
		Show:   []Field{{Name: "biller"}},
	},
	{
		Kind:    BulkTransfer,
		Methods: []string{"POST", "PUT"},
		Paths:   []string{"/bulk/**"},
		Params:  []Condition{{Name: "confirm"}},
	},
	{
		Kind:    TokenManagement,
		Methods: []string{"DELETE"},
		Paths:   []string{"/token/revoke"},
	},
	{
		Kind:    UserChange,
		Methods: []string{"PUT", "PATCH"},
		Paths:   []string{"/api/users/*"},
		Show:    []Field{{Name: "user.email"}, {Name: "roles"}},
	},
	{
		Name:    "sjis",
		Kind:    Transfer,
		Paths:   []string{"/sjis/transfer"},
		Charset: "shift_jis",
		Show:    []Field{{Name: "payee"}, {Name: "memo"}},
	},
}

func mustCompile(t testing.TB, rules []Rule) *Policy {
	t.Helper()
	p, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// req builds a request for target ("path?query") with header lines
// "Name: value".
func req(method, target string, header ...string) *Request {
	path, query, _ := strings.Cut(target, "?")
	h := http.Header{}
	for _, line := range header {
		k, v, _ := strings.Cut(line, ":")
		h.Add(k, strings.TrimSpace(v))
	}
	return &Request{Method: method, Path: path, RawQuery: query, Header: h}
}

const formType = "Content-Type: application/x-www-form-urlencoded"

func TestMatchesEveryVariant(t *testing.T) {
	p := mustCompile(t, testRules)
	extra := []string{
		"/transfer/execute;%2f..%2f", // Tomcat cuts the parameter before decoding
		"/transfer/execute%00/..",    // a NUL-truncating backend
		"/transfer/execute.json",     // Spring MVC suffix pattern matching
		"/transfer/Execute.x.y",
		"/transfer/execute;x.json",
	}
	for _, path := range append(protectedVariants, extra...) {
		r := req("POST", path+"?amount=1", formType)
		r.NoBody = true
		if !p.Watches(r) {
			t.Errorf("Watches(%q) = false", path)
		}
		m := p.Classify(r, nil)
		if m == nil || m.Kind != Transfer {
			t.Errorf("Classify(%q) = %+v, want a transfer", path, m)
		}
	}
}

func TestNoMatch(t *testing.T) {
	p := mustCompile(t, testRules)
	for _, path := range []string{
		"/", "/transfer", "/transfer/executed", "/transfer/execute/x", "/transfer/executex",
		"/menu", "/static/app.css", "/account/statement", "/transfer%2fexecute%2fx",
		"/pay/confirm", "/pay/a/b/confirm", "/bulkx", "/api/users", "/api/users/1/roles",
		"/transfer/execute/%2e%2e/%2e%2e/menu", "/transfer/.execute", "/transfer/execute.json/x",
	} {
		r := req("POST", path, formType)
		if p.Watches(r) {
			t.Errorf("Watches(%q) = true", path)
		}
		if m := p.Classify(r, []byte("amount=1")); m != nil {
			t.Errorf("Classify(%q) = %+v", path, m)
		}
	}
}

func TestMethods(t *testing.T) {
	p := mustCompile(t, testRules)
	for _, tc := range []struct {
		name   string
		r      *Request
		body   string
		noBody bool
		watch  bool
		match  bool
	}{
		{"post", req("POST", "/transfer/execute"), "", true, true, true},
		{"lower case", req("post", "/transfer/execute"), "", true, true, true},
		{"get without body", req("GET", "/transfer/execute"), "", true, false, false},
		{"get that may have a body", req("GET", "/transfer/execute"), "", false, true, false},
		{"override header", req("GET", "/transfer/execute", "X-HTTP-Method-Override: post"), "", true, true, true},
		{"x-http-method", req("GET", "/transfer/execute", "X-HTTP-Method: POST"), "", true, true, true},
		{"x-method-override list", req("GET", "/transfer/execute", "X-Method-Override: PUT, POST"), "", true, true, true},
		{"_method in query", req("GET", "/transfer/execute?_method=POST"), "", true, true, true},
		{"encoded _method in query", req("GET", "/transfer/execute?%5Fmethod=p%4FST"), "", true, true, true},
		{"_method in form body", req("GET", "/transfer/execute", formType), "a=1&_method=post", false, true, true},
		{"_METHOD in form body", req("PUT", "/transfer/execute", formType), "_METHOD=POST", false, true, true},
		{"_method in JSON body", req("PATCH", "/transfer/execute", "Content-Type: application/json"), `{"_method":"POST"}`, false, true, true},
		{"other _method", req("GET", "/transfer/execute", formType), "_method=PUT", false, true, false},
		{"head is get", req("HEAD", "/pay/x/confirm?step=execute"), "", true, true, true},
		{"delete", req("DELETE", "/token/revoke"), "", true, true, true},
		{"delete by override", req("POST", "/token/revoke", "X-HTTP-Method-Override: DELETE"), "", true, true, true},
		{"post to delete rule", req("POST", "/token/revoke"), "", true, false, false},
		{"bad query, no body", req("GET", "/transfer/execute?x=%"), "", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.NoBody = tc.noBody
			if got := p.Watches(tc.r); got != tc.watch {
				t.Errorf("Watches = %v, want %v", got, tc.watch)
			}
			m := p.Classify(tc.r, []byte(tc.body))
			if (m != nil) != tc.match {
				t.Fatalf("Classify = %+v, want match %v", m, tc.match)
			}
			if m != nil && m.Doubt {
				t.Errorf("Classify in doubt: %v", m.Err)
			}
		})
	}
}

func TestParams(t *testing.T) {
	p := mustCompile(t, testRules)
	for _, tc := range []struct {
		name   string
		r      *Request
		body   string
		match  bool
		biller string
	}{
		{"query", req("GET", "/pay/x/confirm?step=execute&biller=Tokyo+Gas"), "", true, "Tokyo Gas"},
		{"body", req("POST", "/pay/x/confirm", formType), "step=execute&biller=TEPCO", true, "TEPCO"},
		{"repeated, query and body", req("POST", "/pay/x/confirm?step=input", formType), "step=execute", true, ""},
		{"repeated in body", req("POST", "/pay/x/confirm", formType), "step=input&step=execute", true, ""},
		{"case and spaces", req("POST", "/pay/x/confirm", formType), "STEP=%20Execute%20", true, ""},
		{"other value", req("POST", "/pay/x/confirm?step=input", formType), "step=review", false, ""},
		{"absent", req("POST", "/pay/x/confirm", formType), "biller=x", false, ""},
		{"semicolon is not a separator", req("POST", "/pay/x/confirm", formType), "a=1;step=execute", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Classify(tc.r, []byte(tc.body))
			if (m != nil) != tc.match {
				t.Fatalf("Classify = %+v, want match %v", m, tc.match)
			}
			if m == nil {
				return
			}
			if m.Doubt || m.Kind != BillPayment || m.Rule.Name != "bill" {
				t.Errorf("Classify = %+v", m)
			}
			if got := m.Fields[0].Value; got != tc.biller {
				t.Errorf("biller = %q, want %q", got, tc.biller)
			}
		})
	}

	// A condition with no value only asks for presence.
	r := req("POST", "/bulk/payroll", formType)
	if m := p.Classify(r, []byte("confirm=")); m == nil || m.Kind != BulkTransfer {
		t.Errorf("presence: %+v", m)
	}
	if m := p.Classify(r, []byte("confirmed=1")); m != nil {
		t.Errorf("absence: %+v", m)
	}
	if m := p.Classify(req("PUT", "/bulk?confirm"), nil); m == nil {
		t.Error(`"/bulk/**" must match "/bulk"`)
	}
}

func TestShownFields(t *testing.T) {
	p := mustCompile(t, testRules)
	m := p.Classify(req("POST", "/transfer/execute?amount=1000", formType), []byte("payee=%E5%B1%B1%E7%94%B0&amount=1000"))
	if m == nil || m.Doubt {
		t.Fatalf("Classify = %+v", m)
	}
	want := []ShownField{
		{Name: "amount", Label: "金額", LabelEn: "Amount", Value: "1000"},
		{Name: "payee", Label: "振込先", LabelEn: "Payee", Value: "山田"},
	}
	for i, f := range m.Fields {
		if f.Name != want[i].Name || f.Label != want[i].Label || f.LabelEn != want[i].LabelEn || f.Value != want[i].Value || f.Values != nil {
			t.Errorf("field %d = %+v, want %+v", i, f, want[i])
		}
	}

	// Default labels.
	m = p.Classify(req("GET", "/pay/x/confirm?step=execute&biller=a"), nil)
	if f := m.Fields[0]; f.Label != "biller" || f.LabelEn != "biller" {
		t.Errorf("default labels: %+v", f)
	}

	// A bank that takes the last value, or joins them, would execute
	// another amount than the one shown: in doubt.
	for _, body := range []string{"amount=1&amount=1000000", "amount=1&AMOUNT=1000000"} {
		m = p.Classify(req("POST", "/transfer/execute", formType), []byte(body))
		if m == nil || !m.Doubt || !errors.Is(m.Err, ErrConflictingValues) {
			t.Fatalf("%s: Classify = %+v", body, m)
		}
		if f := m.Fields[0]; f.Value != "1" || len(f.Values) != 2 || f.Values[1] != "1000000" {
			t.Errorf("%s: amount = %+v", body, f)
		}
	}
	// Only an exact name counts first.
	m = p.Classify(req("POST", "/transfer/execute?Amount=5", formType), []byte("amount=5"))
	if m == nil || m.Doubt || m.Fields[0].Value != "5" {
		t.Errorf("same value under two cases: %+v", m)
	}
}

func TestMultipart(t *testing.T) {
	p := mustCompile(t, testRules)
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("amount", "30000")
	w.WriteField("payee", "佐藤")
	fw, _ := w.CreateFormFile("attachment", "invoice.pdf")
	fw.Write([]byte("%PDF-1.4"))
	w.Close()
	r := req("POST", "/transfer/execute", "Content-Type: "+w.FormDataContentType())
	m := p.Classify(r, buf.Bytes())
	if m == nil || m.Doubt {
		t.Fatalf("Classify = %+v", m)
	}
	if m.Fields[0].Value != "30000" || m.Fields[1].Value != "佐藤" {
		t.Errorf("fields = %+v", m.Fields)
	}

	// File parts are present, valued by their file name.
	pr := mustCompile(t, []Rule{{Kind: BulkTransfer, Paths: []string{"/upload"}, Params: []Condition{{Name: "attachment", Value: "invoice.pdf"}}, Show: []Field{{Name: "attachment"}}}})
	r.Path = "/upload"
	m = pr.Classify(r, buf.Bytes())
	if m == nil || m.Doubt || m.Fields[0].Value != "invoice.pdf" {
		t.Fatalf("Classify = %+v", m)
	}
}

func TestJSON(t *testing.T) {
	p := mustCompile(t, testRules)
	body := `{"user":{"email":"a@example.jp","age":42,"admin":false},"roles":["viewer","approver"],"note":null}`
	m := p.Classify(req("PUT", "/api/users/7", "Content-Type: application/json; charset=utf-8"), []byte(body))
	if m == nil || m.Kind != UserChange {
		t.Fatalf("Classify = %+v", m)
	}
	if m.Fields[0].Value != "a@example.jp" {
		t.Errorf("user.email = %+v", m.Fields[0])
	}
	// An array of several values is read whole by some banks and as its
	// first element by others (the demo bank): a conflict.
	if f := m.Fields[1]; f.Value != "viewer" || len(f.Values) != 2 || m.Verdict != Conflicting {
		t.Errorf("roles = %+v, verdict %q", f, m.Verdict)
	}
	// Duplicate keys are: parsers disagree on which one wins.
	for _, body := range []string{
		`{"user":{"email":"a@example.jp"},"user":{"email":"b@example.jp"}}`,
		`{"user":{"email":"a@example.jp"},"user.email":"b@example.jp"}`,
		`{"roles":["a"],"roles":["b"]}`,
	} {
		m = p.Classify(req("PUT", "/api/users/7", "Content-Type: application/json"), []byte(body))
		if m == nil || !m.Doubt || !errors.Is(m.Err, ErrConflictingValues) {
			t.Errorf("%s: Classify = %+v", body, m)
		}
	}

	pj := mustCompile(t, []Rule{{Kind: Transfer, Paths: []string{"/api/transfer"}, Params: []Condition{
		{Name: "amount", Value: "1e6"}, {Name: "urgent", Value: "true"}, {Name: "payee"}, {Name: "payee.bank", Value: "0001"},
	}, Show: []Field{{Name: "payee.name"}}}})
	for _, ct := range []string{"application/json", "application/vnd.bank+json"} {
		h := []string{}
		if ct != "" {
			h = append(h, "Content-Type: "+ct)
		}
		m = pj.Classify(req("POST", "/api/transfer", h...), []byte(` {"amount":1e6,"urgent":true,"payee":{"bank":"0001","name":"ヤマダ"}}`))
		if m == nil || m.Doubt || m.Fields[0].Value != "ヤマダ" {
			t.Errorf("%q: Classify = %+v", ct, m)
		}
	}
}

func encode(t *testing.T, e encoding.Encoding, s string) string {
	t.Helper()
	b, err := e.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// formEscape percent-encodes every byte, as browsers do for non-ASCII.
func formEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString("%")
		b.WriteString(strings.ToUpper(string("0123456789abcdef"[s[i]>>4]) + string("0123456789abcdef"[s[i]&15])))
	}
	return b.String()
}

func TestCharsets(t *testing.T) {
	p := mustCompile(t, testRules)
	const payee, memo = "株式会社ヤマダ電機", "ソ表示"
	sjis := func(s string) string { return formEscape(encode(t, japanese.ShiftJIS, s)) }
	euc := func(s string) string { return formEscape(encode(t, japanese.EUCJP, s)) }

	for _, tc := range []struct {
		name string
		r    *Request
		body string
	}{
		{"rule charset", req("POST", "/sjis/transfer", formType), "payee=" + sjis(payee) + "&memo=" + sjis(memo)},
		{"rule charset in query", req("GET", "/sjis/transfer?payee="+sjis(payee)+"&memo="+sjis(memo)), ""},
		{"declared EUC-JP", req("POST", "/sjis/transfer", formType+"; charset=EUC-JP"), "payee=" + euc(payee) + "&memo=" + euc(memo)},
		{"_charset_ field", req("POST", "/sjis/transfer", formType), "_charset_=windows-31j&payee=" + sjis(payee) + "&memo=" + sjis(memo)},
		{"windows-31j", req("POST", "/sjis/transfer", formType+"; charset=Windows-31J"), "payee=" + sjis(payee) + "&memo=" + sjis(memo)},
		{"utf-8 declared", req("POST", "/sjis/transfer", formType+"; charset=utf-8"), "payee=" + formEscape(payee) + "&memo=" + formEscape(memo)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Classify(tc.r, []byte(tc.body))
			if m == nil || m.Doubt {
				t.Fatalf("Classify = %+v", m)
			}
			if m.Fields[0].Value != payee || m.Fields[1].Value != memo {
				t.Errorf("fields = %+v", m.Fields)
			}
		})
	}

	// Multipart parts carry raw bytes; the form's charset applies.
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	w.WriteField("_charset_", "shift_jis")
	w.WriteField(encode(t, japanese.ShiftJIS, "振込先"), encode(t, japanese.ShiftJIS, payee))
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="memo"`)
	h.Set("Content-Type", "text/plain; charset=Shift_JIS") // the form's own: read alike everywhere
	pw, _ := w.CreatePart(h)
	pw.Write([]byte(encode(t, japanese.ShiftJIS, memo)))
	w.Close()
	pm := mustCompile(t, []Rule{{Kind: Transfer, Paths: []string{"/mp"}, Charset: "shift_jis", Show: []Field{{Name: "振込先"}, {Name: "memo"}}}})
	m := pm.Classify(req("POST", "/mp", "Content-Type: "+w.FormDataContentType()), buf.Bytes())
	if m == nil || m.Doubt || m.Fields[0].Value != payee || m.Fields[1].Value != memo {
		t.Fatalf("multipart Shift_JIS: %+v", m)
	}

	// Shift_JIS sent to a UTF-8 rule does not decode: in doubt.
	m = p.Classify(req("POST", "/transfer/execute", formType), []byte("payee="+sjis(payee)))
	if m == nil || !m.Doubt || m.Err == nil {
		t.Errorf("wrong charset: %+v", m)
	}
}

// TestFailClosed checks that a body the gateway cannot read never lets a
// watched request through unclassified.
func TestFailClosed(t *testing.T) {
	p := mustCompile(t, testRules)
	gz := "Content-Encoding: gzip"
	for _, tc := range []struct {
		name string
		r    *Request
		body string
		kind Kind
	}{
		{"bad percent-encoding", req("POST", "/pay/x/confirm", formType), "step=%zz", BillPayment},
		{"bad percent-encoding in query", req("GET", "/pay/x/confirm?a=%"), "", BillPayment},
		{"bad JSON", req("POST", "/pay/x/confirm", "Content-Type: application/json"), `{"step":"execute"`, BillPayment},
		{"JSON scalar", req("POST", "/pay/x/confirm", "Content-Type: application/json"), `"step"`, BillPayment},
		{"JSON trailing data", req("POST", "/pay/x/confirm", "Content-Type: application/json"), `{"a":1} {"step":"execute"}`, BillPayment},
		{"JSON-looking text", req("POST", "/pay/x/confirm", "Content-Type: text/plain"), `{"step":"execute",}`, BillPayment},
		{"deep JSON", req("POST", "/pay/x/confirm", "Content-Type: application/json"), strings.Repeat("[", 100) + strings.Repeat("]", 100), BillPayment},
		{"invalid UTF-8 JSON", req("POST", "/pay/x/confirm", "Content-Type: application/json"), "{\"step\":\"\xff\"}", BillPayment},
		{"multipart without boundary", req("POST", "/pay/x/confirm", "Content-Type: multipart/form-data"), "--x\r\n", BillPayment},
		{"truncated multipart", req("POST", "/pay/x/confirm", "Content-Type: multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name=\"step\"\r\n\r\nexecute", BillPayment},
		{"multipart duplicate name", req("POST", "/pay/x/confirm", "Content-Type: multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name=\"a\"; name=\"step\"\r\n\r\nexecute\r\n--x--\r\n", BillPayment},
		{"quoted-printable part", req("POST", "/pay/x/confirm", "Content-Type: multipart/form-data; boundary=x"), "--x\r\nContent-Disposition: form-data; name=\"step\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=65xecute\r\n--x--\r\n", BillPayment},
		{"unknown charset", req("POST", "/pay/x/confirm", formType+"; charset=x-klingon"), "step=execute", BillPayment},
		{"unknown _charset_", req("POST", "/pay/x/confirm", formType), "_charset_=x-klingon&step=x", BillPayment},
		{"bad Content-Type", req("POST", "/pay/x/confirm", "Content-Type: application/x-www-form-urlencoded; charset"), "step=execute", BillPayment},
		{"two Content-Types", req("POST", "/pay/x/confirm", formType, "Content-Type: application/json"), "step=execute", BillPayment},
		{"compressed body", req("POST", "/pay/x/confirm", formType, gz), "\x1f\x8b\x08\x00", BillPayment},
		// The method could be in the unreadable body.
		{"method in bad body", req("GET", "/transfer/execute", formType), "_method=POST&x=%", Transfer},
		// A rule that needs nothing from the body is not in doubt.
		{"rule without body conditions", req("DELETE", "/token/revoke", "Content-Type: application/json"), "{", TokenManagement},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Classify(tc.r, []byte(tc.body))
			if m == nil {
				t.Fatal("Classify = nil")
			}
			if m.Kind != tc.kind {
				t.Errorf("kind = %s, want %s", m.Kind, tc.kind)
			}
			needsBody := len(m.Rule.Params) > 0 || len(m.Rule.Show) > 0
			if m.Doubt != needsBody || (m.Err != nil) != needsBody {
				t.Errorf("Doubt = %v, Err = %v", m.Doubt, m.Err)
			}
			var refusal *Refusal
			if needsBody && (m.Verdict != Refused || !errors.As(m.Err, &refusal)) {
				t.Errorf("Verdict = %q, Err = %#v; want Refused with a *Refusal", m.Verdict, m.Err)
			}
			if len(m.Fields) != len(m.Rule.Show) {
				t.Errorf("fields = %+v", m.Fields)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	ok := Rule{Kind: Transfer, Paths: []string{"/transfer"}}
	for _, tc := range []struct {
		name string
		edit func(r *Rule)
		want string
	}{
		{"unknown kind", func(r *Rule) { r.Kind = "wire" }, `rule 1 ("wire"): unknown kind "wire"`},
		{"no paths", func(r *Rule) { r.Paths = nil }, `rule 1 ("transfer"): no paths`},
		{"empty path", func(r *Rule) { r.Paths = []string{""} }, `bad path "": empty`},
		{"relative path", func(r *Rule) { r.Paths = []string{"transfer"} }, `bad path "transfer": must start with /`},
		{"query in path", func(r *Rule) { r.Paths = []string{"/t?x=1"} }, "use params"},
		{"partial wildcard", func(r *Rule) { r.Paths = []string{"/t/exec*"} }, `"*" must be a whole segment`},
		{"inner double star", func(r *Rule) { r.Paths = []string{"/t/**/x"} }, `"**" must be the last segment`},
		{"NUL", func(r *Rule) { r.Paths = []string{"/t%00/x"} }, "NUL"},
		{"encoded ?", func(r *Rule) { r.Paths = []string{"/t%3Fx"} }, `"?"`},
		{"bad method", func(r *Rule) { r.Methods = []string{"PO ST"} }, `bad method "PO ST"`},
		{"empty method", func(r *Rule) { r.Methods = []string{""} }, `bad method ""`},
		{"unnamed condition", func(r *Rule) { r.Params = []Condition{{Value: "x"}} }, "param condition without a name"},
		{"unnamed field", func(r *Rule) { r.Show = []Field{{Label: "金額"}} }, "shown field 1 without a name"},
		{"unknown charset", func(r *Rule) { r.Name = "named"; r.Charset = "klingon" }, `rule 1 ("named"): unknown charset "klingon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			_, err := Compile([]Rule{r})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile error = %v, want %q", err, tc.want)
			}
		})
	}
	// The second rule is named in the error.
	if _, err := Compile([]Rule{ok, {Kind: "x", Paths: []string{"/"}}}); err == nil || !strings.HasPrefix(err.Error(), "rule 2") {
		t.Errorf("Compile error = %v", err)
	}
	if _, err := Compile(nil); err != nil {
		t.Errorf("empty policy: %v", err)
	}
}

func TestKindValid(t *testing.T) {
	for _, k := range []Kind{Transfer, BillPayment, BulkTransfer, TokenManagement, UserChange} {
		if !k.Valid() {
			t.Errorf("%q invalid", k)
		}
	}
	for _, k := range []Kind{"", "Transfer", "login"} {
		if k.Valid() {
			t.Errorf("%q valid", k)
		}
	}
}

func TestRuleOrderAndCopy(t *testing.T) {
	rules := []Rule{
		{Name: "first", Kind: BillPayment, Paths: []string{"/op"}, Params: []Condition{{Name: "type", Value: "bill"}}},
		{Name: "second", Kind: Transfer, Paths: []string{"/op", "/OP/"}},
	}
	p := mustCompile(t, rules)
	rules[1].Kind = UserChange
	if m := p.Classify(req("GET", "/op?type=bill"), nil); m == nil || m.Rule.Name != "first" {
		t.Errorf("first: %+v", m)
	}
	if m := p.Classify(req("GET", "/op?type=x"), nil); m == nil || m.Rule.Name != "second" || m.Kind != Transfer {
		t.Errorf("second: %+v", m)
	}
	// A wildcard root pattern watches everything.
	all := mustCompile(t, []Rule{{Kind: UserChange, Paths: []string{"/**"}}})
	if !all.Watches(req("GET", "/anything/at/all")) || !all.Watches(req("GET", "/")) {
		t.Error(`"/**" must watch everything`)
	}
}

func TestLongSegments(t *testing.T) {
	long := strings.Repeat("x", 100)
	p := mustCompile(t, []Rule{{Kind: Transfer, Paths: []string{"/a/" + long}}})
	for _, path := range []string{"/a/" + long, "/A/" + strings.ToUpper(long), "/a/" + long + "%2e"} {
		if !p.Watches(req("POST", path)) {
			t.Errorf("Watches(%q) = false", path)
		}
	}
}

// TestErrorsHideValues: Match.Err may be logged, and values may be PINs or
// codes (SECURITY.md 22).
func TestErrorsHideValues(t *testing.T) {
	p := mustCompile(t, testRules)
	m := p.Classify(req("POST", "/transfer/execute?otp=12%3", formType), []byte("pin=98%zz76&amount=1"))
	if m == nil || m.Err == nil {
		t.Fatalf("Classify = %+v", m)
	}
	for _, secret := range []string{"12", "98", "76"} {
		if strings.Contains(m.Err.Error(), secret) {
			t.Errorf("Err %q shows a value", m.Err)
		}
	}
}
