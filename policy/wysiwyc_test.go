package policy

import (
	"bytes"
	"errors"
	"mime/multipart"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// wysiwycRules are the demo bank's transfer and bulk transfer, and an
// operation that shows nothing of its body.
var wysiwycRules = []Rule{
	{Kind: Transfer, Paths: []string{"/transfer/execute"}, Show: []Field{{Name: "amount"}, {Name: "payee"}}},
	{Kind: BulkTransfer, Paths: []string{"/bulk/execute"}, Show: []Field{{Name: "file"}}},
	{Kind: TokenManagement, Methods: []string{"POST"}, Paths: []string{"/token/revoke"}},
}

// mp is a multipart body with boundary "b" whose parts are given as their
// header lines and content, separated by a blank line.
func mp(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--b\r\n" + strings.Replace(p, "\n\n", "\r\n\r\n", 1) + "\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

const mpType = "Content-Type: multipart/form-data; boundary=b"

// TestWYSIWYC: each body class is refused, held without its fields,
// shown escaped, or shown as sent — never shown with values the bank
// would not execute.
func TestWYSIWYC(t *testing.T) {
	p := mustCompile(t, wysiwycRules)
	transfer := func(target string, header ...string) *Request {
		return req("POST", "/transfer/execute"+target, header...)
	}
	bulk := func(header ...string) *Request { return req("POST", "/bulk/execute", header...) }
	for _, tc := range []struct {
		name    string
		r       *Request
		body    string
		verdict Verdict
		// refused: a part of the client message; otherwise the shown
		// value of the first field.
		want string
	}{
		// Body types no browser form sends, or that the bank reads otherwise.
		{"text/plain form", transfer("", "Content-Type: text/plain"), "amount=1&payee=x", Refused, `the request body type "text/plain" cannot be shown for confirmation; send application/x-www-form-urlencoded or multipart/form-data`},
		{"text/plain JSON", transfer("", "Content-Type: text/plain; charset=utf-8"), `{"amount":"1"}`, Refused, `"text/plain"`},
		{"text/plain, fields also in the query", transfer("?amount=1000000&payee=x", "Content-Type: text/plain"), "amount=1", Refused, `"text/plain"`},
		{"no Content-Type", transfer(""), "amount=1&payee=x", Refused, "has no Content-Type"},
		{"XML", transfer("", "Content-Type: application/xml"), "<amount>1</amount>", Refused, `"application/xml"`},
		{"octet-stream", transfer("", "Content-Type: application/octet-stream"), "amount=1", Refused, `"application/octet-stream"`},
		{"multipart/mixed", transfer("", "Content-Type: multipart/mixed; boundary=b"), mp("Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, `"multipart/mixed"`},
		{"gzip", transfer("", formType, "Content-Encoding: gzip"), "\x1f\x8b\x08\x00", Refused, `Content-Encoding "gzip"`},
		{"deflate, readable", transfer("", formType, "Content-Encoding: deflate"), "amount=1", Refused, "send it uncompressed"},
		{"two Content-Types", transfer("", formType, "Content-Type: text/plain"), "amount=1", Refused, "Content-Type header cannot be read"},
		{"Content-Type that does not parse", transfer("", formType+"; charset"), "amount=1", Refused, "Content-Type header cannot be read"},

		// Charsets and escapes the bank may read otherwise.
		{"unknown charset", transfer("", formType+"; charset=x-klingon"), "amount=1", Refused, `unknown charset "x-klingon"`},
		{"_charset_ other than the form's", transfer("", formType), "_charset_=euc-jp&amount=1&payee=%A4%A2", Refused, `_charset_ field names "euc-jp", but the bank reads this form as utf-8`},
		{"unknown _charset_", transfer("", formType), "_charset_=x-klingon&amount=1", Refused, `_charset_ field names the unknown charset "x-klingon"`},
		{"invalid UTF-8", transfer("", formType), "amount=1&payee=%FF%FE", Refused, `"payee" is not valid utf-8`},
		{"invalid Shift_JIS", transfer("", formType+"; charset=shift_jis"), "amount=1&payee=%82", Refused, `"payee" is not valid shift_jis`},
		{"ISO-8859-1 read as windows-1252 by browsers", transfer("", formType+"; charset=iso-8859-1"), "amount=1&payee=%80", Refused, `"payee" is read one way in iso-8859-1 by browsers and another by Java servers`},
		{"US-ASCII with a high byte", transfer("", formType+"; charset=us-ascii"), "amount=1&payee=%E9", Refused, "by browsers and another by Java servers"},
		{"invalid UTF-8 in a name", transfer("", formType), "amount=1&%FF=x", Refused, "parameter name is not valid"},
		{"invalid UTF-8 JSON", transfer("", "Content-Type: application/json"), "{\"payee\":\"\xff\"}", Refused, "JSON body cannot be read"},
		{"bad % in the body", transfer("", formType), "amount=1%&payee=x", Refused, `form body cannot be read (invalid % escape in parameter "amount"); send a literal "%" as %25`},
		{"non-ASCII query, body in another charset", transfer("?payee=%82%A0", formType+"; charset=shift_jis"), "amount=1", Refused, "the query string holds non-ASCII text, which servers read in the URL's charset (utf-8) or the body's (shift_jis)"},
		{"bad % in the query", transfer("?amount=%zz", formType), "payee=x", Refused, "query string cannot be read"},
		{"bad JSON", transfer("", "Content-Type: application/json"), `{"amount":1,}`, Refused, "send one well-formed JSON object"},

		// Names that another reader reads as another name.
		{"NUL in a name", transfer("", formType), "amount%00x=1000000&amount=1", Refused, `parameter name "amount\x00x" has character U+0000`},
		{"space after a name", transfer("", formType), "amount+=1000000&amount=1", Refused, "surrounding space"},
		{"bidi control in a name", transfer("", formType), "amo%E2%80%AEunt=1", Refused, "U+202E"},
		{"control character in a JSON key", transfer("", "Content-Type: application/json"), `{"amount\u0000":"1000000","amount":"1"}`, Refused, "U+0000"},

		// Multipart parts whose names readers disagree on.
		{"multipart without boundary", transfer("", "Content-Type: multipart/form-data"), mp("Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, "no boundary"},
		{"truncated multipart", transfer("", mpType), "--b\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1", Refused, "multipart body cannot be read"},
		{"RFC 2231 name*", transfer("", mpType), mp("Content-Disposition: form-data; name*=UTF-8''amount\n\n1000000", "Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, `RFC 2231 parameter "name*"`},
		{"name and name* in one part", transfer("", mpType), mp("Content-Disposition: form-data; name=\"memo\"; name*=UTF-8''amount\n\n1000000", "Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, "RFC 2231"},
		{"name*0 continuation", transfer("", mpType), mp("Content-Disposition: form-data; name*0=amo; name*1=unt\n\n1000000"), Refused, `"name*0"`},
		{"filename* beside filename (one file shown, another executed)", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"sogo.csv\"; filename*=UTF-8''evil.csv\n\n1,0001"), Refused, `"filename*"`},
		{"name* part and name part for one file", bulk(mpType), mp("Content-Disposition: form-data; name*=UTF-8''file; filename=\"evil.csv\"\n\n9,9999", "Content-Disposition: form-data; name=\"file\"; filename=\"sogo.csv\"\n\n1,0001"), Refused, "RFC 2231"},
		{"encoded-word name", transfer("", mpType), mp("Content-Disposition: form-data; name=\"=?UTF-8?B?YW1vdW50?=\"\n\n1000000", "Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, "RFC 2047 encoded word in the name"},
		{"encoded-word filename", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"=?UTF-8?Q?evil.csv?=\"\n\n1"), Refused, "RFC 2047 encoded word in the filename"},
		{"two Content-Disposition headers", transfer("", mpType), mp("Content-Disposition: form-data; name=\"memo\"\nContent-Disposition: form-data; name=\"amount\"\n\n1000000"), Refused, "2 Content-Disposition headers"},
		{"attachment disposition", transfer("", mpType), mp("Content-Disposition: attachment; name=\"amount\"\n\n1000000", "Content-Disposition: form-data; name=\"amount\"\n\n1"), Refused, `Content-Disposition "attachment" is not form-data`},
		{"form-data with a suffix", transfer("", mpType), mp("Content-Disposition: form-datax; name=\"amount\"\n\n1000000"), Refused, "not form-data"},
		{"repeated name parameter", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amount\"; name=\"amount\"\n\n1000000"), Refused, "repeated name parameter"},
		{"conflicting name parameters", transfer("", mpType), mp("Content-Disposition: form-data; name=\"memo\"; name=\"amount\"\n\n1000000"), Refused, "does not parse"},
		{"escaped quote in a name", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amount\\\"\"\n\n1000000"), Refused, "backslash in the name"},
		{"escaped letter in a name", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amo\\unt\"\n\n1000000"), Refused, "name parameter read in two ways"},
		{"Windows path, escaped as Go writes it", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"C:\\\\data\\\\sogo.csv\"\n\n1"), Refused, "a directory in the filename"},
		{"Unix path in a file name", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"../evil.csv\"\n\n1"), Refused, "a directory in the filename"},
		{"MSIE path in a filename", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"C:\\data\\sogo.csv\"\n\n1"), Refused, "filename parameter read in two ways"},
		{"unquoted non-ASCII name", transfer("", mpType), mp("Content-Disposition: form-data; name=金額\n\n1000000"), Refused, "does not parse"},
		{"quoted-printable part", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amount\"\nContent-Transfer-Encoding: quoted-printable\n\n=31"), Refused, "Content-Transfer-Encoding"},
		{"part charset other than the form's", transfer("", mpType), mp("Content-Disposition: form-data; name=\"payee\"\nContent-Type: text/plain; charset=Shift_JIS\n\n\x82\xdd"), Refused, `declares the charset "Shift_JIS", not the form's utf-8`},
		{"unknown part charset", transfer("", mpType), mp("Content-Disposition: form-data; name=\"payee\"\nContent-Type: text/plain; charset=x-klingon\n\nx"), Refused, `unknown charset "x-klingon"`},

		// Read, but the bank may take any of several values: held, not shown.
		{"repeated field", transfer("", formType), "amount=1&amount=1000000", Conflicting, ""},
		{"field in query and body", transfer("?amount=1000000", formType), "amount=1", Conflicting, ""},
		{"same name, other case", transfer("", formType), "amount=1&AMOUNT=1000000", Conflicting, ""},
		{"JSON array of two values", transfer("", "Content-Type: application/json"), `{"amount":["1","1000000"]}`, Conflicting, ""},
		{"duplicate JSON key", transfer("", "Content-Type: application/json"), `{"amount":"1","amount":"1000000"}`, Conflicting, ""},
		{"duplicate JSON key, escaped", transfer("", "Content-Type: application/json"), `{"\u0061mount":"1000000","amount":"1"}`, Conflicting, ""},
		{"two parts of one name", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amount\"\n\n1", "Content-Disposition: form-data; name=\"amount\"\n\n1000000"), Conflicting, ""},
		{"two files of one name", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"sogo.csv\"\n\n1", "Content-Disposition: form-data; name=\"file\"; filename=\"evil.csv\"\n\n9"), Conflicting, ""},
		{"conflict beats escape", transfer("", formType), "amount=1&amount=2&payee=%E2%80%AE", Conflicting, ""},

		// Exact values that display misleadingly: shown escaped.
		{"right-to-left override", transfer("", formType), "amount=1%E2%80%AE0000", Escaped, `1\u202E0000`},
		{"bidi embeddings", transfer("", formType), "amount=%E2%80%AA1%E2%80%AB%E2%80%AC%E2%80%AD", Escaped, `\u202A1\u202B\u202C\u202D`},
		{"bidi isolates", transfer("", formType), "amount=%E2%81%A61%E2%81%A7%E2%81%A8%E2%81%A9", Escaped, `\u20661\u2067\u2068\u2069`},
		{"bidi marks", transfer("", formType), "amount=1%E2%80%8E%E2%80%8F%D8%9C", Escaped, `1\u200E\u200F\u061C`},
		{"zero-width space", transfer("", formType), "amount=1%E2%80%8B0", Escaped, `1\u200B0`},
		{"control characters", transfer("", formType), "amount=1%00%09%0A%7F%C2%85", Escaped, `1\u0000\u0009\u000A\u007F\u0085`},
		{"line separator", transfer("", formType), "amount=1%E2%80%A8", Escaped, `1\u2028`},
		{"fullwidth digits", transfer("", formType), "amount=%EF%BC%91%EF%BC%90", Escaped, `\uFF11\uFF10`},
		{"Arabic-Indic digit", transfer("", "Content-Type: application/json"), `{"amount":"1٣"}`, Escaped, `1\u0663`},
		{"mathematical digit", transfer("", formType), "amount=%F0%9D%9F%8F", Escaped, `\U0001D7CF`},
		{"combining overlay on a digit", transfer("", formType), "amount=1%CC%B80", Escaped, `1\u03380`},
		{"mark after an escape", transfer("", formType), "amount=%E2%80%AE%CC%81", Escaped, `\u202E\u0301`},
		{"Hangul filler", transfer("", formType), "amount=1&payee=%E3%85%A4", Escaped, "1"},
		{"private use", transfer("", formType), "amount=%EE%80%80", Escaped, `\uE000`},
		{"unassigned", transfer("", formType), "amount=%CD%B8", Escaped, `\u0378`},
		{"backslash beside an escape", transfer("", formType), "amount=%5Cu0031%E2%80%AE", Escaped, `\\u0031\u202E`},
		{"escaped in a multipart file name", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"evil\u202Evsc.csv\"\n\n1"), Escaped, `evil\u202Evsc.csv`},

		// As sent.
		{"Japanese with an ideographic space", transfer("", formType), "amount=1&payee=" + formEscape("株式会社ヤマダ　電機"), Exact, "1"},
		{"a backslash alone", transfer("", formType), "amount=%5Cu0031", Exact, `\u0031`},
		{"variation selector on a kanji", transfer("", formType), "amount=" + formEscape("葛\U000E0100"), Exact, "葛\U000E0100"},
		{"emoji", transfer("", formType), "amount=" + formEscape("🙂"), Exact, "🙂"},
		{"part charset the form's own", transfer("", mpType), mp("Content-Disposition: form-data; name=\"amount\"\nContent-Type: text/plain; charset=UTF-8\n\n1"), Exact, "1"},
		{"quoted semicolon in a file name", bulk(mpType), mp("Content-Disposition: form-data; name=\"file\"; filename=\"a;b.csv\"\n\n1"), Exact, "a;b.csv"},
		{"JSON array of one value", transfer("", "Content-Type: application/json"), `{"amount":["1"],"payee":["a","a"]}`, Exact, "1"},
		{"ISO-8859-1 where both agree", transfer("", formType+"; charset=iso-8859-1"), "amount=1&payee=caf%E9", Exact, "1"},
		{"non-ASCII query, body in the same charset", transfer("?payee=%E3%81%82", formType+"; charset=UTF-8"), "amount=1", Exact, "1"},
		{"text/plain without a body", transfer("?amount=1"+"&payee=x", "Content-Type: text/plain"), "", Exact, "1"},
		{"nothing of the body shown", req("POST", "/token/revoke", "Content-Type: text/plain"), "anything", Exact, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Classify(tc.r, []byte(tc.body))
			if m == nil {
				t.Fatal("Classify = nil: a watched operation passed")
			}
			if m.Verdict != tc.verdict {
				t.Fatalf("Verdict = %q (%v), want %q", m.Verdict, m.Err, tc.verdict)
			}
			if m.Doubt != (tc.verdict != Exact) || m.Doubt != (m.Err != nil) {
				t.Errorf("Doubt = %v, Err = %v", m.Doubt, m.Err)
			}
			switch tc.verdict {
			case Refused:
				var refusal *Refusal
				if !errors.As(m.Err, &refusal) || !strings.HasPrefix(refusal.Error(), "otpgate: ") || !strings.Contains(refusal.Error(), tc.want) {
					t.Errorf("Err = %v, want a *Refusal saying %q", m.Err, tc.want)
				}
				for _, f := range m.Fields {
					if f.Value != "" || f.Values != nil {
						t.Errorf("refused, yet field %+v has a value", f)
					}
				}
			case Conflicting:
				if !errors.Is(m.Err, ErrConflictingValues) {
					t.Errorf("Err = %v, want ErrConflictingValues", m.Err)
				}
			case Escaped:
				if !errors.Is(m.Err, ErrEscaped) || !strings.Contains(m.Err.Error(), "U+") {
					t.Errorf("Err = %v, want ErrEscaped naming code points", m.Err)
				}
				fallthrough
			default:
				if len(m.Fields) > 0 && m.Fields[0].Value != tc.want {
					t.Errorf("shown %q, want %q", m.Fields[0].Value, tc.want)
				}
			}
		})
	}
}

// TestRefusalsHideValues: refusals go to the client and the log; values
// may be PINs or codes (SECURITY.md 22).
func TestRefusalsHideValues(t *testing.T) {
	p := mustCompile(t, wysiwycRules)
	for _, body := range []string{"pin=4%z321", "pin=4321%FF", "pin+=4321"} {
		m := p.Classify(req("POST", "/transfer/execute", formType), []byte(body))
		if m == nil || m.Verdict != Refused {
			t.Fatalf("%s: Classify = %+v", body, m)
		}
		if strings.Contains(m.Err.Error(), "4321") || strings.Contains(m.Err.Error(), "321") {
			t.Errorf("%s: refusal %q shows a value", body, m.Err)
		}
	}
}

// TestEscapeShownRoundTrip: the escaped text names every code point, so
// the customer can read back exactly what the bank will receive.
func TestEscapeShownRoundTrip(t *testing.T) {
	for _, s := range []string{
		"", "10000", `C:\data`, "\u202e", `\u202E` + "\u202e", "1\u0338", "\u0301", "a\u0301", "\U0001D7CF\\",
		"\xff", // invalid UTF-8 is refused before it is shown, but must not crash
	} {
		got, found := escapeShown(s)
		if found == nil {
			if got != s {
				t.Errorf("escapeShown(%q) = %q without escaping anything", s, got)
			}
			continue
		}
		if back := unescapeShown(t, got); back != s && utf8.ValidString(s) {
			t.Errorf("escapeShown(%q) = %q, reads back as %q", s, got, back)
		}
		if again, more := escapeShown(got); more != nil {
			t.Errorf("escapeShown(%q) = %q, which still holds %q (%q)", s, got, more, again)
		}
	}
}

func FuzzEscapeShown(f *testing.F) {
	for _, s := range []string{"1\u202e0", `\u0031` + "\u200b", "０１", "1\u0338", "\u202e\u0301", "葛\U000E0100", "\x00\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		got, found := escapeShown(s)
		if found == nil {
			if got != s {
				t.Fatalf("escapeShown(%q) = %q without escaping anything", s, got)
			}
			return
		}
		if back := unescapeShown(t, got); back != s {
			t.Fatalf("escapeShown(%q) = %q, reads back as %q", s, got, back)
		}
		if _, more := escapeShown(got); more != nil {
			t.Fatalf("escapeShown(%q) = %q still holds %q", s, got, more)
		}
	})
}

// unescapeShown reads escaped text back: \\, \uXXXX and \UXXXXXXXX.
func unescapeShown(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		n := 0
		switch {
		case strings.HasPrefix(s[i:], `\\`):
			b.WriteByte('\\')
			i++
			continue
		case strings.HasPrefix(s[i:], `\u`):
			n = 4
		case strings.HasPrefix(s[i:], `\U`):
			n = 8
		}
		if n == 0 || i+2+n > len(s) {
			t.Fatalf("%q: lone backslash at %d", s, i)
		}
		r, err := strconv.ParseUint(s[i+2:i+2+n], 16, 32)
		if err != nil {
			t.Fatalf("%q: bad escape at %d: %v", s, i, err)
		}
		b.WriteRune(rune(r))
		i += 1 + n
	}
	return b.String()
}

// A multipart body as Go's (and browsers') writers make it reads exactly.
func TestWYSIWYCWriterMultipart(t *testing.T) {
	p := mustCompile(t, wysiwycRules)
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("file", `山田 "給与".csv`)
	fw.Write([]byte("1,0001\r\n"))
	w.Close()
	m := p.Classify(req("POST", "/bulk/execute", "Content-Type: "+w.FormDataContentType()), buf.Bytes())
	if m == nil || m.Verdict != Exact || m.Fields[0].Value != `山田 "給与".csv` {
		t.Fatalf("Classify = %+v", m)
	}
}
