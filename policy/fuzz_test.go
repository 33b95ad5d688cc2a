package policy

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// matchSegments is a reference for the trie: whether pattern segments match
// path segments, written as plainly as possible.
func matchSegments(pat, segs []string) bool {
	if len(pat) == 1 && pat[0] == "**" {
		return true
	}
	if len(pat) == 0 || len(segs) == 0 {
		return len(pat) == 0 && len(segs) == 0
	}
	seg := strings.ToLower(segs[0])
	if len(pat) == 1 && len(segs) == 1 && !strings.Contains(pat[0], ".") {
		seg, _, _ = strings.Cut(seg, ".")
	}
	if pat[0] != "*" && pat[0] != seg {
		return false
	}
	return matchSegments(pat[1:], segs[1:])
}

var fuzzPatterns = []string{
	"/transfer/execute", "/transfer/*", "/pay/*/confirm", "/bulk/**", "/**/", "/a/*/**", "/*", "/",
	"/admin/*", "/a/b/**",
}

func FuzzNormalisePath(f *testing.F) {
	for _, s := range protectedVariants {
		f.Add(s)
	}
	for _, s := range []string{
		"", "/", "%", "%2", "%%341", "/a/%2e%2e/%2e%2e/..", "/a;b/c;d", "/%u002e%u002e/x",
		"/\u212A/\u017F", "/%c0%ae%c0%ae/", "/%e0%80%ae", "/a/b/%252e%252e", "/admin/%3bpage",
		"/ . /..../", "/x\x00/../y", "/İ", "/%C4%B0", "/\xc0", "/\xc0%af",
		"%U00A0", // no-break space is not whitespace to Java's trim()
		"%%u%3000%341", "%u%u0030030", "\xe0%80%ae", "\xc0\xe0\x80\xae",
	} {
		f.Add(s)
	}
	rules := make([]Rule, len(fuzzPatterns))
	pats := make([][]string, len(fuzzPatterns))
	for i, pat := range fuzzPatterns {
		rules[i] = Rule{Kind: Transfer, Paths: []string{pat}}
		pats[i] = readPath(pat, -1, true)
	}
	p := mustCompile(f, rules)

	f.Fuzz(func(t *testing.T, in string) {
		// The linear decoder reaches what repeated single rounds reach.
		naive := in
		for {
			d, changed := decodeOnce(naive)
			if !changed {
				break
			}
			naive = d
		}
		if d := decodeAll(in); d != naive {
			t.Fatalf("decodeAll(%q) = %q, repeated decodeOnce = %q", in, d, naive)
		}

		got := NormalisePath(in)
		if again := NormalisePath(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, got, again)
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q: no leading slash", in, got)
		}
		if got != "/" && strings.HasSuffix(got, "/") {
			t.Fatalf("%q -> %q: trailing slash", in, got)
		}
		for _, bad := range []string{"//", "\\", ";", "\x00", "?", "#"} {
			if strings.Contains(got, bad) {
				t.Fatalf("%q -> %q: contains %q", in, got, bad)
			}
		}
		for seg := range strings.SplitSeq(got[1:], "/") {
			if seg == "." || seg == ".." || strings.HasSuffix(seg, ".") || strings.TrimFunc(seg, isSpace) != seg {
				t.Fatalf("%q -> %q: segment %q", in, got, seg)
			}
		}
		if strings.ToLower(got) != got && utf8.ValidString(got) {
			for _, r := range got {
				if foldRune(r) != r {
					t.Fatalf("%q -> %q: not folded (%q)", in, got, r)
				}
			}
		}
		for i := 0; i < len(got); i++ {
			if 'A' <= got[i] && got[i] <= 'Z' {
				t.Fatalf("%q -> %q: upper case", in, got)
			}
		}

		// A clean path reads the same in the allocation-free walk.
		var segs [maxFastSegments]string
		if n, ok := splitClean(in, &segs); ok {
			if joined := "/" + strings.ToLower(strings.Join(segs[:n], "/")); joined != got {
				t.Fatalf("splitClean(%q) = %q, NormalisePath = %q", in, joined, got)
			}
		}

		// The trie agrees with the reference matcher on every reading, and
		// the canonical reading is among them.
		var want []int
		canonical := false
		for _, rd := range readings(in) {
			if "/"+strings.Join(rd, "/") == got {
				canonical = true
			}
			for i, pat := range pats {
				if matchSegments(pat, rd) {
					want = append(want, i)
				}
			}
		}
		if !canonical {
			t.Fatalf("readings(%q) lack %q", in, got)
		}
		have := p.matchPath(in, nil)
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(slices.Compact(want), slices.Compact(have)) {
			t.Fatalf("matchPath(%q) = %v, reference %v", in, have, want)
		}
	})
}

func FuzzClassifyBody(f *testing.F) {
	for _, s := range []struct{ path, query, ct, body string }{
		{"/pay/x/confirm", "biller=a", "application/x-www-form-urlencoded", "step=execute&biller=b"},
		{"/transfer/execute", "", "application/json", `{"confirm":1,"amount":{"v":[1,2]}}`},
		{"/transfer/execute", "_method=POST", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\n1\r\n--x--\r\n"},
		{"/transfer;x/execute", "", "multipart/form-data; boundary=\"x\"", "--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\\\"b\"\r\n\r\nz\r\n--x"},
		{"/pay/%2e/confirm", "%", "text/plain; charset=shift_jis", "amount=%82%a0"},
		{"/bulk", "", "application/json; charset=iso-2022-jp", "[{\"a\":null},true]"},
		{"/transfer/execute", "", "", "{\"amount\":1"},
		{"/transfer/execute", "", "application/x-www-form-urlencoded; charset=euc-jp", "_charset_=shift_jis&amount=%A4%A2"},
		// What you see is what you confirm: one seed per class.
		{"/transfer/execute", "confirm", "text/plain", "amount=1"},
		{"/transfer/execute", "confirm", "", "amount=1"},
		{"/transfer/execute", "", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name*=UTF-8''amount\r\n\r\n1000000\r\n--x\r\nContent-Disposition: form-data; name=\"amount\"\r\n\r\n1\r\n--x\r\nContent-Disposition: form-data; name=\"confirm\"\r\n\r\n1\r\n--x--\r\n"},
		{"/bulk/x", "", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name*=UTF-8''a; filename=\"evil.csv\"\r\n\r\n9\r\n--x\r\nContent-Disposition: form-data; name=\"a\"; filename=\"b.csv\"\r\n\r\n1\r\n--x--\r\n"},
		{"/transfer/execute", "confirm", "application/x-www-form-urlencoded", "amount=1%E2%80%AE0&amount%00=2"},
		{"/transfer/execute", "confirm", "application/json", `{"amount":"\uff11\u0338","Amount":"1"}`},
	} {
		f.Add(s.path, s.query, s.ct, []byte(s.body))
	}
	p := mustCompile(f, []Rule{
		{Kind: BillPayment, Paths: []string{"/pay/*/confirm"}, Params: []Condition{{Name: "step", Value: "execute"}}, Show: []Field{{Name: "biller"}}},
		{Kind: Transfer, Methods: []string{"POST"}, Paths: []string{"/transfer/execute"}, Params: []Condition{{Name: "confirm"}}, Show: []Field{{Name: "amount"}}},
		{Kind: BulkTransfer, Paths: []string{"/bulk/**"}, Charset: "shift_jis", Show: []Field{{Name: "a"}}},
	})

	check := func(t *testing.T, r *Request, body []byte) *Match {
		m := p.Classify(r, body)
		if m == nil {
			return nil
		}
		if !p.Watches(r) {
			t.Fatalf("Classify(%+v) matched, Watches did not", r)
		}
		if len(body) == 0 {
			nb := *r
			nb.NoBody = true
			if !p.Watches(&nb) {
				t.Fatalf("Classify(%+v) matched without a body, Watches did not", r)
			}
		}
		if len(m.Fields) != len(m.Rule.Show) || m.Kind != m.Rule.Kind {
			t.Fatalf("bad match %+v", m)
		}
		if m.Doubt != (m.Err != nil) || m.Doubt != (m.Verdict != Exact) {
			t.Fatalf("Verdict %q, Doubt %v, Err %v", m.Verdict, m.Doubt, m.Err)
		}
		var refusal *Refusal
		if (m.Verdict == Refused) != errors.As(m.Err, &refusal) {
			t.Fatalf("Verdict %q, Err %#v", m.Verdict, m.Err)
		}
		for _, sf := range m.Fields {
			for _, v := range append([]string{sf.Value}, sf.Values...) {
				if _, found := escapeShown(v); found != nil {
					t.Fatalf("field %q shown with %q unescaped", sf.Name, found)
				}
			}
		}
		for _, sf := range m.Fields {
			if !utf8.ValidString(sf.Value) || len(sf.Values) == 1 || len(sf.Values) > 1 && sf.Values[0] != sf.Value {
				t.Fatalf("bad field %+v", sf)
			}
		}
		return m
	}

	f.Fuzz(func(t *testing.T, path, query, ct string, body []byte) {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		check(t, &Request{Method: "POST", Path: path, RawQuery: query, Header: h}, body)
		check(t, &Request{Method: "GET", Path: path, RawQuery: query, Header: h}, body)

		// Whatever the body, conditions met by the query keep a request
		// on a watched path protected.
		r := &Request{Method: "PUT", Path: "/pay/x/confirm", RawQuery: "step=execute&" + query, Header: h}
		if check(t, r, body) == nil {
			t.Fatalf("query conditions held, Classify = nil")
		}
		r = &Request{Method: "POST", Path: "/transfer/execute", RawQuery: query + "&confirm", Header: h}
		if check(t, r, body) == nil {
			t.Fatalf("query conditions held, Classify = nil")
		}
	})
}
