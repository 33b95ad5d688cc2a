package fleet

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/demobank"
)

// NextCode hands out the current step, then the next, then nothing until
// the clock moves on: each step once, always inside a skew-1 window.
func TestNextCode(t *testing.T) {
	c := &Customer{Secret: []byte("12345678901234567890")}
	now := time.Unix(59*60+30, 0)
	for i, want := range []int64{59, 60} {
		code, step, ok := c.NextCode(now)
		if !ok || step != want || code != Code(c.Secret, want) {
			t.Fatalf("call %d: %s step %d ok %v; want step %d", i+1, code, step, ok, want)
		}
	}
	if _, _, ok := c.NextCode(now); ok || c.Ready(now) {
		t.Fatal("a third code in one step")
	}
	if code, step, ok := c.NextCode(now.Add(time.Minute)); !ok || step != 61 || code != Code(c.Secret, 61) {
		t.Fatalf("next minute: step %d ok %v; want 61", step, ok)
	}
}

// RFC 6238 appendix B, SHA-1, truncated to 6 digits, at T = 59 s with 30 s
// steps: step 1.
func TestCode(t *testing.T) {
	if got := Code([]byte("12345678901234567890"), 1); got != "287082" {
		t.Fatalf("Code = %s, want 287082", got)
	}
}

// A fleet login gets a session of the demo bank's own; another login is
// the bank's to judge.
func TestBankLogin(t *testing.T) {
	srv := httptest.NewServer(Bank(demobank.New()))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		name        string
		form        url.Values
		wantSession bool
	}{
		{"fleet customer", url.Values{"service_id": {"F00001"}, "user_id": {"U0000050"}, "password": {Password}}, true},
		{"fleet ID, wrong password", url.Values{"service_id": {"F00001"}, "user_id": {"U0000050"}, "password": {"demo"}}, false},
		{"demo user", url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"demo"}}, true},
		{"demo user, fleet password", url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {Password}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := client.Post(srv.URL+"/login", "application/x-www-form-urlencoded", strings.NewReader(tc.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := false
			for _, c := range res.Cookies() {
				got = got || (c.Name == "JSESSIONID" && c.Value != "")
			}
			if got != tc.wantSession {
				t.Fatalf("status %d, session %v; want %v", res.StatusCode, got, tc.wantSession)
			}
		})
	}
}
