package policy

import (
	"fmt"
	"net/http"
	"testing"
)

// benchRules returns 50 rules shaped like a real bank's: literal paths of
// servlet-style actions, a few wildcards and subtrees.
func benchRules() []Rule {
	sections := []string{"transfer", "furikomi", "bill", "bulk", "payroll", "token", "user", "api/v1", "corp", "fx"}
	actions := []string{"execute", "confirm.do", "kakutei", "*/approve", "register/**"}
	var rules []Rule
	for i, s := range sections {
		for j, a := range actions {
			rules = append(rules, Rule{
				Name:    fmt.Sprintf("r%d", i*len(actions)+j),
				Kind:    kinds[(i+j)%len(kinds)],
				Methods: []string{"POST"},
				Paths:   []string{"/" + s + "/" + a},
				Params:  []Condition{{Name: "step", Value: "execute"}},
				Show:    []Field{{Name: "amount", Label: "金額"}, {Name: "payee", Label: "振込先"}},
			})
		}
	}
	return rules
}

func TestBenchRules(t *testing.T) {
	if n := len(benchRules()); n != 50 {
		t.Fatalf("%d rules", n)
	}
}

var noMatchPaths = []string{
	"/menu",
	"/static/app.css",
	"/account/statement",
	"/Account/Statement/2024/03/",
	"/transfer/input",
	"/api/v1/balance",
	"/account/statement;jsessionid=0123456789ABCDEF",
}

// TestWatchesDoesNotAllocate holds Watches to its promise for ordinary
// traffic.
func TestWatchesDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, benchRules())
	for _, path := range noMatchPaths {
		r := &Request{Method: "GET", Path: path, Header: http.Header{}}
		if p.Watches(r) {
			t.Fatalf("Watches(%q) = true", path)
		}
		if n := testing.AllocsPerRun(100, func() { p.Watches(r) }); n != 0 {
			t.Errorf("Watches(%q): %v allocations", path, n)
		}
	}
}

func BenchmarkWatchesNoMatch50Rules(b *testing.B) {
	p := mustCompile(b, benchRules())
	for _, path := range noMatchPaths {
		b.Run(path, func(b *testing.B) {
			r := &Request{Method: "GET", Path: path, Header: http.Header{"Accept": {"text/html"}}}
			b.ReportAllocs()
			for b.Loop() {
				if p.Watches(r) {
					b.Fatal("watched")
				}
			}
		})
	}
}

func BenchmarkWatchesMatch50Rules(b *testing.B) {
	p := mustCompile(b, benchRules())
	for _, path := range []string{"/transfer/execute", "/Bulk/x/approve", "/transfer;jsessionid=ABC/execute"} {
		b.Run(path, func(b *testing.B) {
			r := &Request{Method: "POST", Path: path, Header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if !p.Watches(r) {
					b.Fatal("not watched")
				}
			}
		})
	}
}

func BenchmarkClassifyMatch(b *testing.B) {
	p := mustCompile(b, benchRules())
	r := &Request{
		Method: "POST",
		Path:   "/transfer/execute",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
	}
	body := []byte("step=execute&amount=150000&payee=%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E&bank=0001&branch=123&account=1234567&token=abcdef0123456789")
	b.ReportAllocs()
	for b.Loop() {
		if m := p.Classify(r, body); m == nil || m.Doubt {
			b.Fatal(m)
		}
	}
}

func BenchmarkNormalisePath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NormalisePath("/menu/..;/Transfer;jsessionid=ABC/%2565xecute%00.jpg")
	}
}
