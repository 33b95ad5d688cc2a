package caddymodule

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/app"
)

// gwSockets are the listening sockets handed to Caddy as fd/N. They stay
// open for the life of the test process: Caddy keeps its own *os.File for
// the number, and a closed number could be reused by another file.
var gwSockets []*os.File

// gwInheritedSocket opens a listening socket and returns its address and
// file descriptor, as systemd socket activation hands one to Caddy.
func gwInheritedSocket(t *testing.T) (string, uintptr) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // f holds the socket
	gwSockets = append(gwSockets, f)
	return ln.Addr().String(), f.Fd()
}

// "otpgate reload" with a changed configuration while customers use the
// site: no request fails, and the one database handle stays open across
// the reloads, so an operation paused before them is confirmed after.
//
// The load is GET requests: ordinary pages passed through to the bank,
// protected transfers (the bank executes a GET with the fields in the query,
// so the gateway pauses it: identity, classification and a store write),
// and the confirm page. POSTs are left out on purpose: Caddy drops some
// POSTs across a config reload even with no otpgate in the config (a plain
// "respond" site loses them too: EOF or connection reset on a kept-alive or
// queued connection, which an HTTP client may not retry for a POST), so
// they would measure Caddy's server handover rather than the gateway.
//
// For the same reason the gateway listens on one inherited socket
// ("bind fd/N", as with systemd socket activation) during the reloads. On a
// plain ":port" Caddy opens a new SO_REUSEPORT socket at each reload and
// closes the old one, and Linux resets the connections still queued on the
// old socket. Operators who need loss-free reloads do the same.
func TestGwReloadUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	paused := gwPause(c, "/transfer/execute", gwTransfer)
	cookie := "JSESSIONID=" + gwSession(c)
	// The load's transfers are another customer's: a customer holds at
	// most 5 operations, and more of U001's would discard the one paused
	// here.
	loader := gwEnrolled(e, "S001", "U002")
	loaderCookie := "JSESSIONID=" + gwSession(loader)
	db := e.gw().shared.Store

	addr, fd := gwInheritedSocket(t)
	base := "http://" + addr
	config := func(lifetime string) string {
		return strings.Replace(e.caddyfile(envOptions{Extra: "challenge_lifetime " + lifetime}),
			fmt.Sprintf(":%d {\n", gatewayPort), fmt.Sprintf(":%d {\n\tbind fd/%d\n", gatewayPort, fd), 1)
	}
	gwLoad(t, config("5m"))

	// The load runs until the reloads are done, bounded in requests and time.
	const (
		workers     = 4
		maxRequests = 2000
		maxLoad     = 5 * time.Second
	)
	var (
		sent, paused2, dropped atomic.Int64
		stop                   = make(chan struct{})
		wg                     sync.WaitGroup
		mu                     sync.Mutex
		failures               []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(maxLoad)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if sent.Add(1) > maxRequests || time.Now().After(deadline) {
					return
				}
				path, as := "", cookie
				var want func(*http.Response) bool
				switch (i + w) % 3 {
				case 0: // an ordinary page, passed through to the bank
					path = "/menu"
					want = func(r *http.Response) bool { return r.StatusCode == http.StatusOK }
				case 1: // a protected operation, paused
					path, as = "/transfer/execute?"+gwTransfer.Encode(), loaderCookie
					want = func(r *http.Response) bool {
						return r.StatusCode == http.StatusSeeOther && strings.HasPrefix(r.Header.Get("Location"), "/.otpgate/confirm/")
					}
				default: // the confirm page of the operation paused before the reloads
					path = "/.otpgate/confirm/" + paused
					want = func(r *http.Response) bool { return r.StatusCode == http.StatusOK }
				}
				req, _ := http.NewRequest(http.MethodGet, base+path, nil)
				req.Header.Set("Cookie", as)
				res, err := cl.Do(req)
				if err != nil {
					// Caddy closes the old server's connections at the
					// handover, so a request racing onto one can see EOF
					// with no answer at all, with or without otpgate. A
					// browser sends such a GET again; so does this client,
					// once. A second failure, or any wrong answer, fails.
					dropped.Add(1)
					if res, err = cl.Do(req); err != nil {
						fail("GET %s: %v (after one retry)", req.URL.Path, err)
						continue
					}
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if !want(res) {
					fail("GET %s: status %d", req.URL.Path, res.StatusCode)
				} else if res.StatusCode == http.StatusSeeOther {
					paused2.Add(1)
				}
			}
		}()
	}

	lifetimes := []string{"6m", "7m", "8m", "9m", "10m"}
	for _, lt := range lifetimes {
		time.Sleep(50 * time.Millisecond)
		gwLoad(t, config(lt))
		if !gwInPool(e) {
			t.Errorf("after the reload to challenge_lifetime %s the database is not in the pool", lt)
		}
	}
	reloaded := time.Now()
	close(stop)
	wg.Wait()

	n := min(sent.Load(), maxRequests)
	t.Logf("%d requests (%d protected, paused) during %d reloads in %v; %d connections dropped at a handover and retried",
		n, paused2.Load(), len(lifetimes), reloaded.Sub(start), dropped.Load())
	if reloaded.After(deadline) {
		t.Errorf("the reloads outlasted the %v of load", maxLoad)
	}
	for _, f := range failures {
		t.Error(f)
	}
	if paused2.Load() < workers {
		t.Errorf("only %d protected operations were paused during the reloads", paused2.Load())
	}
	g := e.gw()
	if time.Duration(g.ChallengeLifetime) != 10*time.Minute {
		t.Errorf("challenge_lifetime %v after the reloads; want 10m", time.Duration(g.ChallengeLifetime))
	}
	if g.shared.Store != db {
		t.Error("the reloaded gateway opened another database handle")
	}
	if refs := app.Opened(gwDBPath(e)); refs != 1 {
		t.Errorf("the database is held open %d times; want once", refs)
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries before any code; want 0", n)
	}

	// Back on the usual port, the operation paused before the reloads is
	// still there and is released once.
	gwLoad(t, e.caddyfile(envOptions{Extra: "challenge_lifetime 10m"}))
	waitServing(t)
	res, body, _ := gwConfirmForm(c, paused, c.code(), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("confirming after the reloads: status %d; want the completion page\n%s", res.StatusCode, body)
	}
	if l := e.ledger(); len(l) != 1 || l[0].Params["amount"] != "50000" {
		t.Fatalf("ledger = %+v; want the one transfer paused before the reloads", l)
	}
}
