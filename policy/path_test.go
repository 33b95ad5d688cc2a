package policy

import (
	"strings"
	"testing"
	"time"
)

// protectedVariants are spellings of /transfer/execute that a lenient Java
// or IIS backend routes to the transfer handler.
var protectedVariants = []string{
	"/transfer/execute",
	"/TRANSFER/Execute",
	"/Transfer/EXECUTE",
	"transfer/execute",
	"/transfer/execute/",
	"/transfer/execute//",
	"/transfer/execute.",
	"/transfer/execute..",
	"/transfer/execute. . ",
	"/transfer/execute%20",
	"/transfer/execute%09",
	"/transfer/execute%2e",
	"/transfer/execute%20%2e%20",
	"//transfer///execute",
	"/x/../transfer/execute",
	"/x/y/../../transfer/execute",
	"/../../transfer/execute",
	"/transfer/./execute",
	"/./transfer/execute/.",
	"/transfer/x/../execute",
	"/transfer;jsessionid=1/execute",
	"/transfer/execute;jsessionid=1",
	"/transfer;/execute;",
	"/transfer/execute;a=b;c=d",
	"/%74ransfer/execute",
	"/%54RANSFER/%45xecute",
	"/%2574ransfer/execute",
	"/%25%37%34ransfer/execute",
	"/%252574ransfer/execute",
	"/transfer%2fexecute",
	"/transfer%2Fexecute",
	"/transfer%252fexecute",
	"/transfer%25252fexecute",
	"/transfer\\execute",
	"/transfer%5cexecute",
	"/transfer%255cexecute",
	"\\transfer\\execute\\",
	"/..;/transfer/execute",
	"/menu/..;/transfer/execute",
	"/menu/..;jsessionid=x/transfer/execute",
	"/menu/%2e%2e/transfer/execute",
	"/menu/%2e%2e%2ftransfer/execute",
	"/menu/%252e%252e/transfer/execute",
	"/menu/.%2e/transfer/execute",
	"/menu/%2e./transfer/execute",
	"/menu%2f..%2ftransfer%2fexecute",
	"/menu/..%5ctransfer%5cexecute",
	"/transfer/execute%00.jpg",
	"/transfer/execute%2500.jpg",
	"/transfer/execute%00/../../menu",
	"/transfer/execute%c0%80.jpg", // Java's modified UTF-8 NUL
	"/transfer/execute%3f.jpg",
	"/transfer/execute%253fx=/../../menu",
	"/transfer/execute%23.css",
	"/transfer/%65xecute",
	"/transfer/%u0065xecute",
	"/transfer/%U0065XECUTE",
	"/transfer%c0%afexecute",
	"/menu/%c0%ae%c0%ae/transfer/execute",
	"/tran%C5%BFfer/execute", // ſ: upper case S in Java
	"/%74%72%61%6e%73%66%65%72/%65%78%65%63%75%74%65",
	"/%20transfer/execute",    // trimming routers
	"/transfer/execute%20/",   // trailing space then slash
	"/transfer/execute%3bx",   // ";" decoded, then cut as a path parameter
	"/transfer/execute%253bx", // the same, twice encoded
}

func TestNormalisePathProtected(t *testing.T) {
	for _, in := range protectedVariants {
		if got := NormalisePath(in); got != "/transfer/execute" {
			t.Errorf("NormalisePath(%q) = %q, want /transfer/execute", in, got)
		}
	}
	if len(protectedVariants) < 40 {
		t.Fatalf("only %d variants", len(protectedVariants))
	}
}

func TestNormalisePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "/"},
		{"/..", "/"},
		{"/%2e%2e/%2e%2e", "/"},
		{"/transfer", "/transfer"},
		{"/transfer/executed", "/transfer/executed"},
		{"/menu", "/menu"},
		{"/a%zzb", "/a%zzb"},
		{"/a%", "/a%"},
		{"/a%2", "/a%2"},
		{"/a%%341", "/aa"},
		{"/%E6%8C%AF%E8%BE%BC", "/振込"},
		{"/\u212Aey", "/key"}, // Kelvin sign
		{"/%C4%B0D", "/id"},   // İ
		{"/%C4%B1D", "/id"},   // ı
		{"/%CE%A3", "/σ"},
		{"/a/%00/b", "/a"},
		{"/a%00b/c", "/a"},
		{"/a/...", "/a"},
		{"/a/.../b", "/a/b"},
		{"/a/ /b", "/a/b"},
		{"/a;x=/b", "/a/b"},
	} {
		if got := NormalisePath(tc.in); got != tc.want {
			t.Errorf("NormalisePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // readings joined by "/", besides NormalisePath's
	}{
		// A strict reader keeps an encoded ";" as part of the segment
		// (Shiro CVE-2020-13933) and an encoded ".." as a name.
		{"/admin/%3bpage", []string{"admin/;page"}},
		{"/a/b/%2e%2e", []string{"a/b/.."}},
		// Decoding once leaves the second layer as segment text.
		{"/a/b/%252e%252e", []string{"a/b/.."}},
		// Tomcat cuts path parameters before it decodes.
		{"/a/b;%2f..%2f", []string{"a/b"}},
		// A backend that does not stop at NUL reads past it.
		{"/a/b%00/../c", []string{"a/c"}},
	} {
		got := map[string]bool{}
		for _, r := range readings(tc.in) {
			got[strings.Join(r, "/")] = true
		}
		for _, w := range tc.want {
			if !got[w] {
				t.Errorf("readings(%q) = %v, missing %q", tc.in, got, w)
			}
		}
	}
}

func TestSplitClean(t *testing.T) {
	var segs [maxFastSegments]string
	for _, tc := range []struct {
		in   string
		want string // joined segments; "!" when not clean
	}{
		{"/", ""},
		{"/menu", "menu"},
		{"/Static/app.css", "Static/app.css"},
		{"/account/statement/", "account/statement"},
		{"menu", "!"},
		{"", "!"},
		{"//menu", "!"},
		{"/a//b", "!"},
		{"/a/./b", "!"},
		{"/a/../b", "!"},
		{"/a/b.", "!"},
		{"/a%2fb", "!"},
		{"/a;b", "a"},
		{"/Transfer;jsessionid=A.B/execute;x=1", "Transfer/execute"},
		{"/a/b;", "a/b"},
		{"/a/b;/", "a/b"},
		{"/a/;b", "!"},
		{"/a/..;/b", "!"},
		{"/a/b.;x", "!"},
		{"/a;x%2f../b", "!"},
		{"/a;x\\..\\b", "!"},
		{"/a\\b", "!"},
		{"/a?b", "!"},
		{"/a#b", "!"},
		{"/a b", "!"},
		{"/a\x00b", "!"},
		{"/\xc3\xa9", "!"},
		{strings.Repeat("/a", maxFastSegments), strings.Repeat("a/", maxFastSegments-1) + "a"},
		{strings.Repeat("/a", maxFastSegments+1), "!"},
	} {
		n, ok := splitClean(tc.in, &segs)
		got := "!"
		if ok {
			got = strings.Join(segs[:n], "/")
		}
		if got != tc.want {
			t.Errorf("splitClean(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// A clean path must read exactly as NormalisePath reads it.
		if ok && "/"+strings.ToLower(got) != NormalisePath(tc.in) {
			t.Errorf("splitClean(%q) = %q disagrees with NormalisePath %q", tc.in, got, NormalisePath(tc.in))
		}
	}
}

// TestDecodeIsLinear guards against the quadratic cost of decoding one layer
// at a time: a megabyte of "%2525…" must not pin a CPU.
func TestDecodeIsLinear(t *testing.T) {
	in := "/%" + strings.Repeat("25", 300_000) + "41/" + strings.Repeat("%c0%ae", 50_000)
	start := time.Now()
	for range readings(in) {
	}
	// Linear decoding takes about a second under -race on a loaded
	// two-core machine; one layer at a time would take minutes.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("readings of %d bytes took %v", len(in), d)
	}
	if got := NormalisePath(in); got != "/a" {
		t.Errorf("NormalisePath = %q", got[:min(len(got), 40)])
	}
}
