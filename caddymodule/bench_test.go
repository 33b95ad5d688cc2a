package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/token"
)

// BenchmarkGateway compares, in one run, bare Caddy reverse_proxy with the
// same proxy behind otpgate, on the same upstream:
//
//	bare_reverse_proxy     GET through reverse_proxy alone
//	passthrough            GET of an ordinary page through otpgate (no session)
//	passthrough_session    the same with a bound session cookie (the gateway
//	                       watches the answer for cookie rotation)
//	pause                  a protected POST: classified, identified, stored
//	pause_confirm_release  pause, then a right code, then the release upstream
//
// go test -run '^$' -bench Gateway -benchtime 3s ./caddymodule
func BenchmarkGateway(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(benchUpstream))
	defer upstream.Close()
	dir := b.TempDir()
	prev := app.Now
	clock := &fakeClock{t: time.Now()}
	app.Now = clock.Now
	defer func() { app.Now = prev }()

	// The gateway on this process's assigned port, bare Caddy on a free one:
	// fixed ports would collide with another test process on the machine.
	barePort, gatePort := freePort(b), gatewayPort
	cfg := fmt.Sprintf(`{
	admin localhost:%[1]d
	skip_install_trust
	log default {
		level ERROR
	}
}
:%[2]d {
	reverse_proxy %[4]s
}
:%[3]d {
	otpgate {
		database %[5]s
		secret_key %[6]s
		mail_from otp@bench.example
		enrol_address any
		mail_dir %[7]s
		require_otp all
		identity login_form {
			path /login
			# Each confirmation moves the fake clock a period on; a long
			# run must not outlive the benchmark's one login.
			idle_timeout 100000h
			max_age 100000h
		}
		rule transfer {
			path /transfer/execute
			show amount 金額 Amount
		}
%[8]s
	}
	reverse_proxy %[4]s
}
`, adminPort, barePort, gatePort, strings.TrimPrefix(upstream.URL, "http://"), filepath.Join(dir, "otpgate.db"), testKey,
		filepath.Join(dir, "mail"), benchFillerRules(48))
	tester := caddytest.NewTester(b).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(tester, cfg)
	if b.Failed() {
		b.FailNow()
	}
	g := gatewayOn(b, filepath.Join(dir, "otpgate.db"))

	client := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		// Not caddytest's transport: it logs every dial, and a log line
		// in the middle of a result line breaks benchstat's parsing.
		tr := &http.Transport{}
		tr.MaxIdleConnsPerHost = 64
		return &http.Client{Transport: tr, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	get := func(c *http.Client, u string) int {
		res, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	bare := fmt.Sprintf("http://localhost:%d", barePort)
	gate := fmt.Sprintf("http://localhost:%d", gatePort)

	b.Run("bare_reverse_proxy", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			c := client()
			for pb.Next() {
				get(c, bare+"/account/statement")
			}
		})
	})
	b.Run("passthrough", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			c := client()
			for pb.Next() {
				get(c, gate+"/account/statement")
			}
		})
	})

	// One enrolled customer, logged in through the gateway.
	c := client()
	res, err := c.PostForm(gate+"/login", url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"x"}})
	if err != nil || res.StatusCode != http.StatusSeeOther {
		b.Fatalf("login: %v %v", res, err)
	}
	res.Body.Close()
	secret := benchEnrol(b, g, dir, clock)

	b.Run("passthrough_session", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get(c, gate+"/account/statement")
			}
		})
	})
	transfer := func() string {
		res, err := c.PostForm(gate+"/transfer/execute", url.Values{"amount": {"1000"}})
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther {
			b.Fatalf("transfer: status %d", res.StatusCode)
		}
		return strings.TrimPrefix(res.Header.Get("Location"), "/.otpgate/confirm/")
	}
	b.Run("pause", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				transfer()
			}
		})
	})
	b.Run("pause_confirm_release", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			id := transfer()
			clock.Advance(time.Minute)
			req, _ := http.NewRequest(http.MethodPost, gate+"/.otpgate/confirm/"+id,
				strings.NewReader(`{"otp":"`+totpAt(secret, clock.Now().Unix()/60)+`"}`))
			req.Header.Set("Content-Type", "application/json")
			res, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("confirm: status %d", res.StatusCode)
			}
		}
	})
}

// benchUpstream stands in for the bank: a login that sets a session, and a
// small page for everything else.
func benchUpstream(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.URL.Path == "/login" {
		b := make([]byte, 16)
		rand.Read(b)
		http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: hex.EncodeToString(b), Path: "/"})
		w.Header().Set("Location", "/menu")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, "<html><body>statement</body></html>")
}

// benchFillerRules makes the policy realistic in size: 50 rules in all.
func benchFillerRules(n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "\t\trule bill_payment filler%d {\n\t\t\tpath /service%d/execute /service%d/*/confirm\n\t\t\tparam action pay\n\t\t}\n", i, i, i)
	}
	return sb.String()
}

var benchLink = regexp.MustCompile(`/\.otpgate/setup/([A-Za-z0-9_-]+)`)

// benchEnrol gives S001/U001 an active token through the lifecycle API.
func benchEnrol(b *testing.B, g *Gateway, dir string, clock *fakeClock) []byte {
	ctx := context.Background()
	u := token.User{Service: "S001", ID: "U001"}
	if _, err := g.shared.Tokens.Issue(ctx, u, "u001@bench.example", "4829", "http://localhost/.otpgate/setup/", "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if len(files) == 0 {
		b.Fatal("no setup mail")
	}
	f, err := os.Open(files[0])
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		b.Fatal(err)
	}
	m := benchLink.FindStringSubmatch(decodeBody(b, msg))
	if m == nil {
		b.Fatal("no setup link in mail")
	}
	res, err := g.shared.Tokens.Setup(ctx, m[1], "S001", "U001", "4829", "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(res.Secret)
	if err != nil {
		b.Fatal(err)
	}
	if err := g.shared.Tokens.Activate(ctx, u, totpAt(secret, clock.Now().Unix()/60), "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	return secret
}
