package demobank

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestNormalisePath(t *testing.T) {
	tests := []struct {
		raw, want string
		ids       []string
	}{
		{"/", "/", nil},
		{"", "/", nil},
		{"/transfer/execute", "/transfer/execute", nil},
		{"/Transfer/EXECUTE", "/transfer/execute", nil},
		{"/transfer/execute/", "/transfer/execute", nil},
		{"/transfer/execute.", "/transfer/execute", nil},
		{"/transfer/execute. . /", "/transfer/execute", nil},
		{"/transfer/execute%20", "/transfer/execute", nil},
		{"//transfer//execute//", "/transfer/execute", nil},
		{"/a/../transfer/./execute", "/transfer/execute", nil},
		{"/../../transfer/execute", "/transfer/execute", nil},
		{"/transfer/execute/..", "/transfer", nil},
		{"/transfer/execute/%2e%2e", "/transfer", nil},
		{"/transfer%2fexecute", "/transfer/execute", nil},
		{"/transfer%252fexecute", "/transfer/execute", nil},
		{"/transfer%25252fexecute", "/transfer/execute", nil},
		{`/transfer\execute`, "/transfer/execute", nil},
		{"/transfer%5cexecute", "/transfer/execute", nil},
		{"/transfer/execute%00.gif", "/transfer/execute", nil},
		{"/transfer/execute%2500/x", "/transfer/execute", nil},
		{"/transfer;x=1/execute;y", "/transfer/execute", nil},
		{"/transfer/execute;jsessionid=ABC", "/transfer/execute", []string{"ABC"}},
		{"/transfer;JSessionID=A;b=c/execute;jsessionid=B", "/transfer/execute", []string{"A", "B"}},
		{"/transfer/execute%3bjsessionid%3dC", "/transfer/execute", []string{"C"}},
		{"/transfer/execute;jsessionid=", "/transfer/execute", nil},
		{"/transfer/execute%00.gif;jsessionid=D", "/transfer/execute", []string{"D"}},
		{"/transfer/%zz", "/transfer/%zz", nil},
		{"/transfer/x%", "/transfer/x%", nil},
		{"/%C3%84", "/\u00c4", nil}, // only ASCII is folded
		{"/KELVIN\u212a", "/kelvin\u212a", nil},
		{"/a%3Fb", "/a?b", nil},
	}
	for _, tt := range tests {
		got, err := normalisePath(tt.raw)
		if err != nil {
			t.Errorf("%q: %v", tt.raw, err)
			continue
		}
		if got.path != tt.want || !slices.Equal(got.sessionIDs, tt.ids) {
			t.Errorf("%q → %q %q, want %q %q", tt.raw, got.path, got.sessionIDs, tt.want, tt.ids)
		}
	}
	if _, err := normalisePath("/%" + strings.Repeat("25", maxDecodes+1) + "41"); err == nil {
		t.Error("no error for a path encoded too deeply")
	}
}

func TestRawPath(t *testing.T) {
	tests := []struct{ requestURI, want string }{
		{"/a/b?c=d", "/a/b"},
		{"/a%2Fb;x=y?c", "/a%2Fb;x=y"},
		{"http://host:8080/a/b?c", "/a/b"},
		{"http://host?c", "/"},
		{"http://host", "/"},
		{"*", "*"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RequestURI = tt.requestURI
		if got := rawPath(r); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.requestURI, got, tt.want)
		}
	}
	r, _ := http.NewRequest(http.MethodGet, "http://host/a%2Fb", nil)
	if got := rawPath(r); got != "/a%2Fb" {
		t.Errorf("client request → %q", got)
	}
}

// Through a real net/http server, the raw request line reaches the bank unchanged:
// the leniency does not depend on httptest.NewRequest.
func TestLeniencyOverTheWire(t *testing.T) {
	b := New()
	srv := httptest.NewServer(b)
	defer srv.Close()
	sid := login(t, b, "S001", "U001")
	targets := []string{
		"/transfer/execute;jsessionid=" + sid,
		"/TRANSFER%252Fexecute;jsessionid=" + sid + "?to_bank=B",
		`/transfer\execute.;jsessionid=` + sid,
		"/transfer/execute%00.gif;jsessionid=" + sid,
		"/menu/%2e%2e//transfer/execute/;jsessionid=" + sid,
	}
	for i, target := range targets {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		body := "to_bank=A&to_account=1&amount=" + fmt.Sprint(i+1)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: bank\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			target, formType, len(body), body)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", target, resp.StatusCode)
		}
	}
	l := b.Ledger()
	if len(l) != len(targets) {
		t.Fatalf("%d entries, want %d", len(l), len(targets))
	}
	if l[1].Params["to_bank"] != "B" {
		t.Errorf("query did not come first: %v", l[1].Params)
	}
}
