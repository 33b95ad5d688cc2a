package caddymodule

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/otpgate/otpgate/internal/app"
)

// keepIDBank is a legacy bank that keeps the session ID at login (many
// hand-written JSP logins only set a session attribute): a login with a
// known JSESSIONID switches that session's user and sets no new cookie.
// Its login takes slowLogin after switching the user (audit, account
// loading), as a real one does.
type keepIDBank struct {
	mu       sync.Mutex
	sessions map[string]string // JSESSIONID → service/user
	ledger   []string          // service/user and to_account of each executed transfer
	// transferWork, when set, is how long a transfer is checked before it
	// is booked to whoever the session belongs to then; transferStarted
	// hears of each transfer as it arrives.
	transferWork    time.Duration
	transferStarted chan struct{}
}

const slowLogin = 400 * time.Millisecond

func (b *keepIDBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	sid := ""
	if c, err := r.Cookie("JSESSIONID"); err == nil {
		sid = c.Value
	}
	b.mu.Lock()
	_, known := b.sessions[sid]
	b.mu.Unlock()
	switch r.URL.Path {
	case "/login":
		if !known {
			var k [16]byte
			rand.Read(k[:])
			sid = strings.ToUpper(hex.EncodeToString(k[:]))
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: sid, Path: "/", HttpOnly: true})
		}
		b.mu.Lock()
		b.sessions[sid] = r.PostFormValue("service_id") + "/" + r.PostFormValue("user_id")
		b.mu.Unlock()
		time.Sleep(slowLogin)
		http.Redirect(w, r, "/menu", http.StatusSeeOther)
	case "/transfer/execute":
		if b.transferStarted != nil {
			b.transferStarted <- struct{}{}
		}
		time.Sleep(b.transferWork)
		b.mu.Lock()
		defer b.mu.Unlock()
		who, known := b.sessions[sid]
		if !known {
			http.Error(w, "not logged in", http.StatusForbidden)
			return
		}
		b.ledger = append(b.ledger, who+" "+r.PostFormValue("to_account"))
		w.Write([]byte("R0000 done"))
	default:
		w.Write([]byte("menu"))
	}
}

// Login-swap race on a bank that keeps the session ID at login. The
// attacker logs in with their own account (session A, bound to them),
// enrols their own token and pauses a transfer in A. Then, with cookie A,
// they log in as the victim (whose password they have): the bank switches
// A to the victim at once, but the gateway drops A's binding only when
// the bank answers the login. A confirmation sent in between is checked
// against A's old binding — the attacker's own code — and released into A,
// which the bank now runs as the victim.
//
// Wanted: a login-shaped request naming a session ends that session's
// binding before it is forwarded, and a release into a session waits for
// (or is refused during) a login in flight on it.
func TestRedteam2LoginSwapRaceStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bank := &keepIDBank{sessions: map[string]string{}}
	attacker, action, csrf, code := keepIDAttack(t, bank)

	done := make(chan int, 1)
	go func() { done <- keepIDVictimLogin(attacker) }()
	time.Sleep(slowLogin / 2) // the bank has switched A to the victim
	res, body := attacker.postForm(action, url.Values{"otp": {code}, "csrf": {csrf}})
	<-done
	bank.mu.Lock()
	ledger := append([]string(nil), bank.ledger...)
	bank.mu.Unlock()
	for _, l := range ledger {
		if strings.HasPrefix(l, "S001/U001 ") {
			t.Errorf("the bank executed a transfer as the victim with the attacker's code: %q (confirm %d %.80s)", l, res.StatusCode, body)
		}
	}
	t.Logf("confirm: %d, ledger %q", res.StatusCode, ledger)
}

// keepIDAttack starts the gateway in front of bank, and has the attacker
// log in with their own account (session A), enrol their own token and
// pause a transfer in A. It returns the attacker and what confirms the
// transfer: the form's action, its CSRF token and a right code.
func keepIDAttack(t *testing.T, bank *keepIDBank) (attacker *customer, action, csrf, code string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	srv := httptest.NewServer(bank)
	t.Cleanup(srv.Close)
	e := &env{t: t, bankURL: srv.URL, dir: t.TempDir(), clock: &fakeClock{t: app.Now()}}
	prev := app.Now
	app.Now = e.clock.Now
	t.Cleanup(func() { app.Now = prev })
	e.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(e.tester, e.caddyfile(envOptions{}))
	if t.Failed() {
		t.FailNow()
	}
	waitServing(t)
	t.Cleanup(func() { unloadGateway(t) })

	attacker = e.customer("S001", "U002") // the attacker's own account
	attacker.login()
	attacker.json = true
	attacker.enrol()
	attacker.json = false
	res, _ := attacker.postForm("/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"7654321"}, "amount": {"900000"}})
	confirm := res.Header.Get("Location")
	if !strings.HasPrefix(confirm, "/.otpgate/confirm/") {
		t.Fatalf("transfer: %d %q; want the confirm page", res.StatusCode, confirm)
	}
	_, page := attacker.get(confirm)
	return attacker, regexpAction(t, page), attacker.csrf(confirm), attacker.code()
}

// keepIDVictimLogin sends the victim's password with the attacker's cookie A and
// returns the status, 0 for no answer.
func keepIDVictimLogin(attacker *customer) int {
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/login", strings.NewReader(url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"demo"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := attacker.c.Do(req)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// The other order of the login-swap race: the attacker's confirmation is
// accepted (their own code, session A still theirs) and the release is on
// its way; the bank checks a transfer for a while before booking it to
// whoever session A belongs to then. The attacker now logs in as the
// victim with cookie A. Had the login reached the bank during the check,
// the transfer would be booked as the victim's. The gateway holds the
// login until the release has the bank's answer (gate.SessionLocks): the
// transfer is the attacker's own.
func TestRedteam2ReleaseInFlightHoldsOffLogin(t *testing.T) {
	bank := &keepIDBank{sessions: map[string]string{}, transferWork: slowLogin, transferStarted: make(chan struct{}, 1)}
	attacker, action, csrf, code := keepIDAttack(t, bank)

	confirmed := make(chan int, 1)
	go func() {
		res, _ := attacker.postForm(action, url.Values{"otp": {code}, "csrf": {csrf}})
		confirmed <- res.StatusCode
	}()
	select {
	case <-bank.transferStarted: // the release is at the bank, being checked
	case <-time.After(15 * time.Second):
		t.Fatal("the release never reached the bank")
	}
	start := time.Now()
	login := keepIDVictimLogin(attacker)
	waited := time.Since(start)
	status := <-confirmed

	bank.mu.Lock()
	ledger := append([]string(nil), bank.ledger...)
	bank.mu.Unlock()
	if len(ledger) != 1 || ledger[0] != "S001/U002 7654321" {
		t.Errorf("ledger %q; want the one transfer booked to the attacker's own account S001/U002", ledger)
	}
	t.Logf("confirm %d; the victim's login answered %d after %v (the bank checks a transfer for %v)", status, login, waited.Round(time.Millisecond), slowLogin)
}

// The login-swap race once the gateway has given up on a release: the bank
// did not answer within the release timeout (the customer is told the
// outcome is unknown), but it is still checking the transfer. A login
// naming the session, sent after that answer or already waiting for the
// release, waits until unknownOutcomeHold has passed, so the transfer is
// still booked to the attacker's own account.
func TestRedteam2UnknownOutcomeHoldsOffLogin(t *testing.T) {
	prevTimeout, prevHold := releaseTimeout, unknownOutcomeHold
	releaseTimeout, unknownOutcomeHold = 200*time.Millisecond, 3*time.Second
	t.Cleanup(func() { releaseTimeout, unknownOutcomeHold = prevTimeout, prevHold })
	for _, during := range []bool{false, true} {
		name := map[bool]string{false: "login after the answer", true: "login waiting during the release"}[during]
		t.Run(name, func(t *testing.T) {
			bank := &keepIDBank{sessions: map[string]string{}, transferWork: 1200 * time.Millisecond, transferStarted: make(chan struct{}, 1)}
			attacker, action, csrf, code := keepIDAttack(t, bank)

			confirmed := make(chan int, 1)
			go func() {
				res, _ := attacker.postForm(action, url.Values{"otp": {code}, "csrf": {csrf}})
				confirmed <- res.StatusCode
			}()
			select {
			case <-bank.transferStarted:
			case <-time.After(15 * time.Second):
				t.Fatal("the release never reached the bank")
			}
			if !during {
				if status := <-confirmed; status != http.StatusBadGateway {
					t.Fatalf("confirm: %d; want 502, the bank's answer not in time", status)
				}
			}
			start := time.Now()
			login := keepIDVictimLogin(attacker)
			waited := time.Since(start)
			if during {
				if status := <-confirmed; status != http.StatusBadGateway {
					t.Fatalf("confirm: %d; want 502, the bank's answer not in time", status)
				}
			}

			time.Sleep(bank.transferWork) // whatever the login did, the check is over
			bank.mu.Lock()
			ledger := append([]string(nil), bank.ledger...)
			bank.mu.Unlock()
			if len(ledger) != 1 || ledger[0] != "S001/U002 7654321" {
				t.Errorf("ledger %q; want the one transfer booked to the attacker's own account S001/U002", ledger)
			}
			t.Logf("the victim's login answered %d after %v (hold %v)", login, waited.Round(time.Millisecond), unknownOutcomeHold)
		})
	}
}
