package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/token"
)

// runningGateways are the otpgate handlers of the running configuration,
// found in its HTTP routes (subroutes included), by server name and route
// order.
func runningGateways(t testing.TB) []*Gateway {
	t.Helper()
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		t.Fatalf("no http app is running: %v", err)
	}
	var out []*Gateway
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, r := range routes {
			for _, h := range r.Handlers {
				switch h := h.(type) {
				case *Gateway:
					out = append(out, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
				}
			}
		}
	}
	servers := app.(*caddyhttp.App).Servers
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for name := range servers {
			if !yield(name) {
				return
			}
		}
	}) {
		walk(servers[name].Routes)
	}
	return out
}

// gatewayOn is the first running gateway whose store is the bbolt file at
// path.
func gatewayOn(t testing.TB, path string) *Gateway {
	t.Helper()
	var keys []string
	for _, g := range runningGateways(t) {
		if g.shared.Key() == path {
			return g
		}
		keys = append(keys, g.shared.Key())
	}
	t.Fatalf("no running gateway on %s (stores: %v)", path, keys)
	return nil
}

// appLoad loads a Caddyfile as "otpgate reload" does and returns the admin
// endpoint's answer, for loads that are meant to fail.
func appLoad(t *testing.T, caddyfile string) (int, string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return http.StatusBadRequest, "adapting: " + err.Error()
	}
	status, body, err := adminLoad(adminAddr(), cfg)
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return status, body
}

// appTwoSites turns the env's one site into two site blocks, one per host
// name, with the same otpgate directive: two handlers on one store.
func appTwoSites(e *env, opt envOptions) string {
	cf := e.caddyfile(opt)
	addr := fmt.Sprintf("\n:%d {\n", gatewayPort)
	i := strings.Index(cf, addr)
	if i < 0 {
		e.t.Fatalf("no site %q in the env's Caddyfile", addr)
	}
	global, site := cf[:i+1], cf[i+1:]
	return global +
		strings.Replace(site, addr[1:], fmt.Sprintf("http://localhost:%d {\n", gatewayPort), 1) +
		strings.Replace(site, addr[1:], fmt.Sprintf("http://127.0.0.1:%d {\n", gatewayPort), 1)
}

// appMails counts the mails in the env's mail folder to addr whose subject
// ends in subjectEN (the English half of every subject).
func appMails(e *env, addr, subjectEN string) int {
	e.t.Helper()
	n := 0
	for _, s := range reenrolSubjects(e, addr) {
		if s == subjectEN {
			n++
		}
	}
	return n
}

// appWaitMail waits, at most 10 seconds, until the mail folder holds a
// mail to addr with subjectEN, then as long as two sweeps take for any
// second one to arrive, and returns how many there are.
func appWaitMail(e *env, addr, subjectEN string, sweep time.Duration) int {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for appMails(e, addr, subjectEN) == 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %q mail to %s within 10s", subjectEN, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2*sweep + 500*time.Millisecond)
	return appMails(e, addr, subjectEN)
}

// Two otpgate handlers on one store (two site blocks with the same
// directive, as an imported snippet gives) share the app's state of that
// store, and its one worker queues and mails a renewal reminder once.
func TestAppTwoHandlersOneStoreOneReminder(t *testing.T) {
	const sweep = time.Second
	opt := envOptions{Extra: "sweep_interval 1s"}
	e := newEnv(t, opt)
	gwLoad(t, appTwoSites(e, opt))
	waitServing(t)

	gws := runningGateways(t)
	if len(gws) != 2 {
		t.Fatalf("%d otpgate handlers are running; want the two site blocks'", len(gws))
	}
	if gws[0].shared != gws[1].shared {
		t.Fatal("the two handlers on one database have a store state each")
	}
	st := gws[0].shared
	if refs := app.Opened(st.Key()); refs != 1 {
		t.Errorf("the pool holds the store %d times; want once, for the one app", refs)
	}
	if w := st.Worker(); w.Owners != 1 || !w.Current {
		t.Errorf("the store has %d owners; want the running app's state alone", w.Owners)
	}

	gwEnrolled(e, "S001", "U001")
	if n := appMails(e, "u001@mobile.example", "OTP token renewal"); n != 0 {
		t.Fatalf("%d renewal reminders right after activation; want none", n)
	}
	// Into the renewal window (validity 365d, renew_window 30d).
	e.clock.Advance(340 * 24 * time.Hour)
	if n := appWaitMail(e, "u001@mobile.example", "OTP token renewal", sweep); n != 1 {
		t.Fatalf("%d renewal reminders; want one however many handlers use the store", n)
	}
	if s := st.Worker().Mail; s.Dead != 0 {
		t.Errorf("outbox gave up on %d notices", s.Dead)
	}
}

// A customer who hangs up right after sending their fifth wrong code is
// locked all the same, and mailed exactly one lock notice: the check runs
// whole once the code is received, and the notice goes through the outbox,
// not the customer's connection.
func TestAppLockMailDespiteHangUp(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	c.json = true
	id := gwPauseJSON(c, "/transfer/execute", gwTransfer)
	for i := 1; i <= 4; i++ {
		res, _, out := gwConfirmJSON(c, id, gwWrongCode(c))
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d %v; want 401", i, res.StatusCode, out)
		}
	}

	body := fmt.Sprintf(`{"otp":%q}`, gwWrongCode(c))
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", gatewayPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf("POST /.otpgate/confirm/%s HTTP/1.1\r\nHost: localhost:%d\r\nCookie: JSESSIONID=%s\r\n"+
		"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n%s",
		id, gatewayPort, gwSession(c), len(body), body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.Close() // before any answer

	// The lock is in the store within a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec, err := e.gw().shared.Tokens.Get(context.Background(), token.User{Service: "S001", ID: "U001"})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Locked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not locked 15s after the fifth wrong code (failures %d)", rec.Failures)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := appWaitMail(e, "u001@mobile.example", "OTP locked", time.Second); n != 1 {
		t.Fatalf("%d lock mails; want exactly one", n)
	}
	if locks := enrolFindAudit(gwAudit(e), audit.Locked, "S001", "U001"); len(locks) != 1 {
		t.Errorf("audit trail has %d lock records; want one", len(locks))
	}
}

// Settings given for one store in two places must be the same; a load that
// says two things about a store is refused, naming the options, and the
// running configuration stays. The global option alone configures a store
// that handlers then merely name.
func TestAppStoreSettingsConflictRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	running := e.gw().shared
	two := appTwoSites(e, envOptions{})
	otherKey := "secret_key " + strings.Repeat("ab", 32)
	site2 := strings.Index(two, fmt.Sprintf("http://127.0.0.1:%d {", gatewayPort))
	db := filepath.Join(e.dir, "otpgate.db")
	for _, tc := range []struct {
		name, caddyfile, want string
	}{
		{"another key", two[:site2] + strings.Replace(two[site2:], "secret_key "+testKey, otherKey, 1),
			"configured twice with different settings (secret_key)"},
		{"another mail folder", two[:site2] + strings.Replace(two[site2:], "mail_dir ", "mail_dir /tmp/otpgate-other-", 1),
			"configured twice with different settings (mail)"},
		{"another period", two[:site2] + strings.Replace(two[site2:], "home /menu", "home /menu\n\t\tperiod 30s", 1),
			"configured twice with different settings (period)"},
		{"the global option and a handler", strings.Replace(e.caddyfile(envOptions{}), "\tskip_install_trust\n",
			"\tskip_install_trust\n\totpgate {\n\t\tdatabase "+db+"\n\t\t"+otherKey+"\n\t\tmail_from otp@test-bank.example\n\t\tmail_dir "+e.dir+"/mail\n\t}\n", 1),
			"configured twice with different settings ("},
		{"database and store", strings.Replace(e.caddyfile(envOptions{}), "\t\tdatabase ", "\t\tstore bbolt /tmp/x.db\n\t\tdatabase ", 1),
			"the store is already given"},
	} {
		status, body := appLoad(t, tc.caddyfile)
		if status == http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("%s: load answered %d %s; want it refused with %q", tc.name, status, body, tc.want)
		}
		if g := e.gw(); g.shared != running || !running.Worker().Current {
			t.Fatalf("%s: the refused load replaced the running store state", tc.name)
		}
	}
	c := gwEnrolled(e, "S001", "U001")
	gwPause(c, "/transfer/execute", gwTransfer)

	// The store set up by the global option alone; the handler names it.
	cf := e.caddyfile(envOptions{})
	for _, line := range []string{"\t\tdatabase " + db + "\n", "\t\tsecret_key " + testKey + "\n", "\t\tissuer \"テスト信用組合\"\n",
		"\t\trequire_otp all\n", "\t\tmail_from otp@test-bank.example\n", "\t\tenrol_address any\n", "\t\tmail_dir " + e.dir + "/mail\n"} {
		if !strings.Contains(cf, line) {
			t.Fatalf("the env's Caddyfile has no line %q", line)
		}
		cf = strings.Replace(cf, line, "", 1)
	}
	cf = strings.Replace(cf, "\tskip_install_trust\n", "\tskip_install_trust\n\totpgate {\n\t\tstore bbolt {\n\t\t\tpath "+db+"\n\t\t}\n\t\tsecret_key "+testKey+
		"\n\t\tissuer \"テスト信用組合\"\n\t\trequire_otp all\n\t\tenrol_address any\n\t\tmail_from otp@test-bank.example\n\t\tmail_dir "+e.dir+"/mail\n\t}\n", 1)
	gwLoad(t, cf)
	waitServing(t)
	g := e.gw()
	w := g.StoreSettings
	w.StoreRaw, w.Database = nil, ""
	if !reflect.DeepEqual(w, app.StoreSettings{}) || g.shared.Tokens.Config().Issuer != "テスト信用組合" {
		t.Fatalf("the handler carries store settings %+v, or does not use the global option's (issuer %q)", w, g.shared.Tokens.Config().Issuer)
	}
	gwPause(c, "/transfer/execute", gwTransfer)
}

// The admin API finds the running app when it is called and answers 400
// for a bad request, 404 for unlocking a customer the gateway knows nothing
// of and 503 only when the store itself fails.
func TestAppAdminStatuses(t *testing.T) {
	e := newEnv(t, envOptions{})
	gwEnrolled(e, "S001", "U001")
	db := url.QueryEscape(filepath.Join(e.dir, "otpgate.db"))
	unlock := func(user string) map[string]string {
		return map[string]string{"service": "S001", "user": user, "by": "tanaka"}
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"known customer", http.MethodGet, "/otpgate/token?service=S001&user=U001", nil, http.StatusOK},
		{"the store named", http.MethodGet, "/otpgate/token?service=S001&user=U001&db=" + db, nil, http.StatusOK},
		{"a customer without a token", http.MethodGet, "/otpgate/token?service=S001&user=U999", nil, http.StatusOK},
		{"unlock of an unknown customer", http.MethodPost, "/otpgate/unlock", unlock("U999"), http.StatusNotFound},
		{"invalid user ID", http.MethodGet, "/otpgate/token?service=S001&user=U%01", nil, http.StatusBadRequest},
		{"reset of an invalid user ID", http.MethodPost, "/otpgate/reset", unlock("U\x01"), http.StatusBadRequest},
		{"unlock of an invalid user ID", http.MethodPost, "/otpgate/unlock", unlock(strings.Repeat("U", 1000)), http.StatusBadRequest},
		{"a store not open", http.MethodGet, "/otpgate/token?service=S001&user=U001&db=/nowhere.db", nil, http.StatusBadRequest},
		{"wrong method", http.MethodGet, "/otpgate/unlock", nil, http.StatusMethodNotAllowed},
		{"unlock of a known customer", http.MethodPost, "/otpgate/unlock", unlock("U001"), http.StatusOK},
	} {
		if status, b := enrolAdmin(t, tc.method, tc.path, tc.body); status != tc.want {
			t.Errorf("%s: %s %s: %d %s; want %d", tc.name, tc.method, tc.path, status, b, tc.want)
		}
	}

	if err := e.gw().shared.Store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/otpgate/token?service=S001&user=U001", "/otpgate/tokens", "/otpgate/audit"} {
		if status, b := enrolAdmin(t, http.MethodGet, path, nil); status != http.StatusServiceUnavailable {
			t.Errorf("GET %s on a closed store: %d %s; want 503", path, status, b)
		}
	}
}

// A reload keeps the store open, the held operations in it and the one
// worker running: the new configuration's app takes the worker over
// without stopping it, and an operation held before is confirmed after.
func TestAppReloadKeepsStoreAndWorker(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	before := e.gw().shared
	worker := before.Worker()

	gwLoad(t, e.caddyfile(envOptions{Extra: "challenge_lifetime 6m"}))
	waitServing(t)
	after := e.gw().shared
	switch {
	case after == before:
		t.Fatal("the reload kept the old configuration's store state")
	case after.Store != before.Store:
		t.Fatal("the reload opened the store again")
	case !worker.Running || after.Worker().Starts != worker.Starts:
		t.Fatalf("the reload restarted the store's worker (started %d times, then %d)", worker.Starts, after.Worker().Starts)
	case !after.Worker().Current || after.Worker().Owners != 1:
		t.Fatalf("after the reload the worker has %d owners; want the new app's state alone", after.Worker().Owners)
	}
	if refs := app.Opened(after.Key()); refs != 1 {
		t.Errorf("the pool holds the store %d times after the reload; want once", refs)
	}

	res, body, _ := gwConfirmForm(c, id, c.code(), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("confirming after the reload: status %d; want the completion page\n%s", res.StatusCode, body)
	}
	if l := e.ledger(); len(l) != 1 {
		t.Fatalf("ledger = %+v; want the one transfer held before the reload", l)
	}
}
