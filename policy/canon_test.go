package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		path   string
		reason string // "" means accepted
	}{
		{"/", ""},
		{"*", ""},
		{"/menu", ""},
		{"/menu/", ""},
		{"/transfer/execute", ""},
		{"/transfer/execute;jsessionid=ABC123", ""},
		{"/transfer;jsessionid=ABC123/execute", ""},
		{"/.otpgate/confirm/abc", ""}, // a leading dot in a name is a name
		{"/static/app.min.js", ""},
		{"/a-b_c~d/e!$&'()*,=@", ""},
		{"/%74ransfer/execute", ""}, // an escaped letter decodes to itself at every depth
		{"/%E6%8C%AF%E8%BE%BC", ""}, // 振込, valid UTF-8
		{"/~user/", ""},

		{"", "does not start"},
		{"transfer/execute", "does not start"},
		{"/transfer%2fexecute", "encoded '/'"},
		{"/transfer%2Fexecute", "encoded '/'"},
		{"/transfer%5cexecute", `encoded '\'`},
		{"/transfer\\execute", "backslash"},
		{"/transfer/execute%3bx", "encoded ';'"},
		{"/x/%2e%2e/transfer/execute", "encoded '.'"},
		{"/transfer/execute%252e", "double encoding"},
		{"/%252e%252e/transfer/execute", "double encoding"},
		{"/transfer/execute%00.gif", "control character"},
		{"/transfer/execute%09", "control character"},
		{"/transfer/execute%20", "encoded space"},
		{"/transfer/execute%3F", "encoded '?'"},
		{"/transfer/execute%23", "encoded '#'"},
		{"/transfer/execute+", "'+'"},
		{"/transfer/execute%2B", "encoded '+'"},
		{"/transfer/execute::$DATA", "character ':'"},
		{"/transfer/execute%3A%3A$DATA", "encoded ':'"},
		{"/transfer/execute%u002e", "invalid percent-encoding"},
		{"/transfer/execute%", "invalid percent-encoding"},
		{"/transfer/execute%4", "invalid percent-encoding"},
		{"/transfer/execute%zz", "invalid percent-encoding"},
		{"/%c0%ae%c0%ae/transfer/execute", "UTF-8"},
		{"/transfer%c0%afexecute", "UTF-8"},
		{"/transfer/execut%ff", "UTF-8"},
		{"/transfer/execute\x00", "control character"},
		{"/transfer/execute\x80", "non-ASCII"},
		{"/transfer/execute ", "character ' '"},
		{"/transfer/execute\"", "character '\"'"},
		{"/transfer/execute#x", "character '#'"},
		{"/transfer//execute", "empty segment"},
		{"//evil/transfer/execute", "empty segment"},
		{"/transfer/./execute", "dot segment"},
		{"/x/../transfer/execute", "dot segment"},
		{"/x/.../transfer/execute", "dot segment"},
		{"/x/..;/transfer/execute", "dot segment"},
		{"/x/;/transfer/execute", "empty segment before ';'"},
		{"/x;..", "ending in '.'"},
		{"/transfer/execute.", "ending in '.'"},
		{"/transfer./execute", "ending in '.'"},
		{"/TRANSF~1/execute", "8.3"},
		{"/%EF%BC%8Ftransfer", "ASCII"},             // fullwidth solidus
		{"/%EF%BD%94ransfer/execute", "ASCII"},      // fullwidth t
		{"/tran%C5%BFfer/execute", "ASCII"},         // long s: upper case S
		{"/%E2%84%AAey", "ASCII"},                   // Kelvin sign
		{"/%C4%B0d", "ASCII"},                       // capital I with dot
		{"/%C4%B1d", "ASCII"},                       // dotless i
		{"/transfer/execute%E2%80%AE", "format"},    // right-to-left override
		{"/transfer/execute%E2%80%8B", "format"},    // zero-width space
		{"/transfer/execute%E3%80%80", "space"},     // ideographic space
		{"/transfer/execute%C2%A0", "space"},        // no-break space
		{"/transfer/execute%C2%85", "space"},        // next line
		{"/transfer/execute%EF%BF%BF", "format or"}, // a noncharacter
	} {
		err := CheckPath(tc.path)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("CheckPath(%q) = %v, want accepted", tc.path, err)
			}
			continue
		}
		var ae *AmbiguousPathError
		if !errors.As(err, &ae) || !strings.Contains(ae.Reason, tc.reason) {
			t.Errorf("CheckPath(%q) = %v, want a refusal naming %q", tc.path, err, tc.reason)
		}
	}
}

// TestCheckPathReadingsAgree checks the promise CheckPath makes: what it
// accepts reads as the same segments at every decoding depth and with or
// without truncation, so the policy's several readings collapse to one.
func TestCheckPathReadingsAgree(t *testing.T) {
	for _, p := range []string{"/transfer/execute", "/%74ransfer/execute;jsessionid=x", "/%E6%8C%AF/x", "/a/b/"} {
		if err := CheckPath(p); err != nil {
			t.Fatalf("CheckPath(%q): %v", p, err)
		}
		if rd := readings(p); len(rd) != 1 {
			t.Errorf("readings(%q) = %q, want one", p, rd)
		}
	}
}

func TestExemptions(t *testing.T) {
	p, err := Compile([]Rule{{Kind: Transfer, Paths: []string{"/transfer/execute"}}, {Kind: TokenManagement, Paths: []string{"/otp/**"}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExemptions([]string{"/static/**", "/docs/files/**"}, p, "/login", "/.otpgate/**")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/static/my%20file.pdf", true},
		{"/static/a%2Fb.png", true},
		{"/docs/files/%E3%80%80x", true},
		{"/static", false},
		{"/Static/x%20y", false},
		{"/static/..%2ftransfer/execute", false},
		{"/static/%2e%2e/transfer/execute", false},
		{"/static/%252e%252e%252ftransfer/execute", false},
		{"/static/x%5c..%5ctransfer", false},
		{"/static/%20..%20/transfer/execute", false},
		{"/static/..;/transfer/execute", false},
		{"/static/%c0%ae%c0%ae/transfer/execute", false},
		{"/static/%25252525252525252e", false}, // deeper than Covers decodes
		{"/docs/x%20y", false},
	} {
		if got := e.Covers(tc.path); got != tc.want {
			t.Errorf("Covers(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}

	for _, tc := range []struct {
		pattern, want string
	}{
		{"/static", "ending in /**"},
		{"/**", "ending in /**"},
		{"/st%61tic/**", "plain path"},
		{"/static;x/**", "plain path"},
		{"/otp/keys/**", `covers "/otp/**"`},
		{"/transfer/**", `covers "/transfer/execute"`},
		{"/TRANSFER/**", `covers "/transfer/execute"`},
		{"/.otpgate/**", `covers "/.otpgate/**"`},
		{"/login/**", `covers "/login"`},
	} {
		_, err := NewExemptions([]string{tc.pattern}, p, "/login", "/.otpgate/**")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewExemptions(%q) = %v, want an error naming %q", tc.pattern, err, tc.want)
		}
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/transfer/execute", "/x/%2e%2e/transfer", "/%252e", "/%c0%ae", "/a;b/c", "/TRANSF~1", "/%EF%BC%8F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil || p == "*" {
			return
		}
		// Accepted: every reading must give the same segments.
		if rd := readings(p); len(rd) != 1 {
			t.Fatalf("CheckPath accepted %q, but its readings differ: %q", p, rd)
		}
	})
}

func BenchmarkCheckPath(b *testing.B) {
	for _, p := range []string{"/menu", "/transfer/execute;jsessionid=0bf1e73c723c38e7f3900cf9aa785679", "/static/css/app.min.css"} {
		b.Run(strings.Trim(p[:min(len(p), 9)], "/"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if CheckPath(p) != nil {
					b.Fatal(p)
				}
			}
		})
	}
}
