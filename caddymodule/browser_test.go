package caddymodule

import (
	"context"
	"encoding/base32"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser test walks a customer through the whole service in a real,
// headless Chromium, the way a person would: only clicks and typing in the
// bank's and the gateway's own pages, with the browser's own cookies, form
// submission, redirects and relative-link resolution. It catches what the
// http.Client tests cannot: a form whose action or fields the browser does not
// send as the gateway expects, a CSP that blocks the stylesheet or the QR
// code, a released response shown at a URL where the bank's links break.

// browserPaths are where the test looks for Chromium: Debian's package first.
var browserPaths = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}

// browserExec finds Chromium. Without one the test is skipped on a
// developer's machine, but fails in CI (CI=true): CI must never pass by
// silently skipping the browser test.
func browserExec(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test")
	}
	for _, p := range browserPaths {
		if found, err := exec.LookPath(p); err == nil {
			return found
		}
	}
	msg := "Chromium not found (looked for " + strings.Join(browserPaths, ", ") + "); install it with: apt-get install -y chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " — CI=true, so the browser test must run")
	}
	t.Skip(msg)
	return ""
}

// browserStart launches a headless Chromium with a fresh profile and returns
// the context of its first tab. Everything ends with the test or after
// limit, whichever comes first.
func browserStart(t *testing.T, chrome string, limit time.Duration) context.Context {
	t.Helper()
	base, cancelBase := context.WithTimeout(context.Background(), limit)
	alloc, cancelAlloc := chromedp.NewExecAllocator(base,
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// /dev/shm is 64 MB in a default container; Chromium crashes when it fills.
		chromedp.Flag("disable-dev-shm-usage", true),
		// A Japanese customer's browser: the gateway answers in Japanese.
		chromedp.Flag("accept-lang", "ja-JP,ja"),
		chromedp.WindowSize(1024, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelTab := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	// Cleanups run last-registered first: the browser is gone before its
	// profile directory (an earlier t.TempDir) is removed.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelBase()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting Chromium (%s): %v", chrome, err)
	}
	return ctx
}

// browserPage is one browser tab under test.
type browserPage struct {
	t   *testing.T
	ctx context.Context
}

// do runs actions that return nothing.
func (p browserPage) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// goTo opens a gateway URL (a path, or an absolute URL as in a mail) as if
// typed into the address bar, and waits for the page.
func (p browserPage) goTo(path string) {
	p.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = gatewayURL + path
	}
	res, err := chromedp.Run(p.ctx, chromedp.NavigateResponse(path))
	if err != nil {
		p.t.Fatalf("opening %s: %v", path, err)
	}
	if res.Status != 200 {
		p.t.Fatalf("opening %s: status %d", path, res.Status)
	}
}

// fill types text into an input, as a person does.
func (p browserPage) fill(css, text string) {
	p.t.Helper()
	p.do("typing into "+css, chromedp.Clear(chromedp.CSS(css)), chromedp.SendKeys(chromedp.CSS(css), text))
}

// click clicks an element that loads a new page, waits for the page and
// returns the status of the response the browser shows.
func (p browserPage) click(css string) int64 {
	p.t.Helper()
	res, err := chromedp.RunResponse(p.ctx, chromedp.Click(chromedp.CSS(css)))
	if err != nil {
		p.t.Fatalf("clicking %s: %v", css, err)
	}
	return res.Status
}

// text is the rendered text of the first element matching css.
func (p browserPage) text(css string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		p.t.Fatalf("reading %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

// eval runs a JavaScript expression in the page.
func browserEval[T any](p browserPage, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// url is where the browser is now.
func (p browserPage) url() *url.URL {
	p.t.Helper()
	loc, err := chromedp.Run(p.ctx, chromedp.Location())
	if err != nil {
		p.t.Fatalf("reading the location: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		p.t.Fatalf("parsing the location %q: %v", loc, err)
	}
	return u
}

// wantPath fails unless the browser shows a page whose path starts with prefix.
func (p browserPage) wantPath(step, prefix string) {
	p.t.Helper()
	if u := p.url(); !strings.HasPrefix(u.Path, prefix) {
		body := browserEval[string](p, `document.body ? document.body.innerText : ""`)
		p.t.Fatalf("%s: browser at %s; want a path starting with %s. Page:\n%s", step, u, prefix, body)
	}
}

// styled fails unless the gateway's stylesheet loaded and applied: a CSP or
// asset-path mistake leaves the page unstyled but otherwise working.
func (p browserPage) styled(step string) {
	p.t.Helper()
	bg := browserEval[string](p, `getComputedStyle(document.querySelector("header.site-header")).backgroundColor`)
	if bg != "rgb(11, 46, 89)" { // --navy
		p.t.Errorf("%s: the header's background is %q; the stylesheet did not apply", step, bg)
	}
}

// rows reads a gateway details table: label → value.
func (p browserPage) rows(css string) map[string]string {
	p.t.Helper()
	return browserEval[map[string]string](p, `(() => {
		const out = {};
		for (const tr of document.querySelectorAll(`+strconv.Quote(css+" tr")+`)) {
			const th = tr.querySelector("th"), td = tr.querySelector("td");
			if (th && td) out[th.innerText.trim()] = td.innerText.trim();
		}
		return out;
	})()`)
}

// shot saves a full-page PNG into dir and logs where. When
// OTPGATE_TEST_SCREENSHOTS names a folder, a copy goes there too, so the
// pages can be looked at after the test's own folder is gone.
func (p browserPage) shot(dir, name string) string {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	if keep := os.Getenv("OTPGATE_TEST_SCREENSHOTS"); keep != "" {
		err := os.MkdirAll(keep, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(keep, name), png, 0o644)
		}
		if err != nil {
			p.t.Logf("keeping a copy of %s: %v", name, err)
		}
	}
	return path
}

var browserReceipt = regexp.MustCompile(`R\d{6}`)

// The first login lands on STEP 1, whose link continues to the menu; STEP
// 1-3; and a transfer of 1,500,000円 confirmed with a code, all in the
// browser.
func TestBrowserEnrolThenConfirmTransfer(t *testing.T) {
	chrome := browserExec(t)
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001") // keeps the secret and the steps spent
	shots := t.TempDir()
	pc := browserPage{t, browserStart(t, chrome, 90*time.Second)}
	start := time.Now()

	// Log in at the bank, through the gateway: no code is asked for. The
	// customer has no token, so the first login lands on STEP 1.
	pc.goTo("/login")
	pc.fill(`input[name="service_id"]`, c.Service)
	pc.fill(`input[name="user_id"]`, c.ID)
	pc.fill(`input[name="password"]`, "demo")
	if st := pc.click(`input[type="submit"][value="ログイン"]`); st != 200 {
		t.Fatalf("login: status %d", st)
	}
	pc.wantPath("first login", "/.otpgate/token")
	if notice := pc.text(`.alert-warning`); !strings.Contains(notice, "ログインしました") {
		t.Errorf("first login: notice %q; want it to say the customer is logged in", notice)
	}
	if step := pc.text(`li[aria-current="step"]`); !strings.Contains(step, "STEP1") {
		t.Errorf("first login: current step %q; want STEP1", step)
	}
	pc.shot(shots, "first-login-step1.png")
	// Its link continues to the bank's menu, logged in.
	if st := pc.click(`ul.links a[href="/menu"]`); st != 200 {
		t.Fatalf("continue to the menu: status %d", st)
	}
	pc.wantPath("continue to the menu", "/menu")

	// A transfer before enrolment: the gateway sends the customer to STEP 1,
	// saying the transfer was not executed.
	pc.click(`a[href="/transfer"]`)
	pc.wantPath("transfer form", "/transfer")
	pc.fill(`input[name="to_bank"]`, "テスト銀行 本店")
	pc.fill(`input[name="to_account"]`, "普通 7654321")
	pc.fill(`input[name="amount"]`, "1000")
	pc.click(`input[type="submit"][value="実行"]`)
	pc.wantPath("transfer before enrolment", "/.otpgate/token")
	if notice := pc.text(`.alert-warning`); !strings.Contains(notice, "実行されていません") {
		t.Errorf("transfer before enrolment: notice %q; want it to say the transfer was not executed", notice)
	}
	if lang := browserEval[string](pc, `document.documentElement.lang`); lang != "ja" {
		t.Errorf("token page language %q; want ja for Accept-Language ja-JP", lang)
	}
	pc.styled("token page")

	// STEP 1: mobile address and activation PIN.
	email := "u001@mobile.example"
	pc.fill(`#email`, email)
	pc.fill(`#pin`, "4829")
	if st := pc.click(`form[action$="/token/issue"] button[type="submit"]`); st != 200 {
		t.Fatalf("issue: status %d", st)
	}
	if info := pc.text(`.alert-success`); info == "" {
		t.Fatal("issue: no confirmation on the token page")
	}

	// STEP 2, on the phone: its own browser context (no bank cookies), a
	// phone-sized viewport, the link from the mail.
	link := e.setupLink(email)
	phoneCtx, closePhone := chromedp.NewContext(pc.ctx, chromedp.WithNewBrowserContext())
	defer closePhone()
	phone := browserPage{t, phoneCtx}
	phone.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	phone.goTo(link)
	phone.styled("setup page")
	phone.fill(`#service_id`, c.Service)
	phone.fill(`#user_id`, c.ID)
	phone.fill(`#pin`, "4829")
	if st := phone.click(`form button[type="submit"]`); st != 200 {
		t.Fatalf("setup: status %d", st)
	}
	secret := strings.ReplaceAll(phone.text(`.secret-key code`), " ", "")
	var err error
	c.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil || len(c.secret) < 20 {
		t.Fatalf("setup page secret %q: %v (%d bytes; want at least 20)", secret, err, len(c.secret))
	}
	// The QR code is there, and the browser decoded it (CSP img-src data:).
	qr := browserEval[[]any](phone, `(() => { const i = document.querySelector("figure.qr img");
		return i ? [i.getAttribute("src").slice(0, 22), i.complete, i.naturalWidth] : []; })()`)
	if len(qr) != 3 || qr[0] != "data:image/png;base64," || qr[1] != true || qr[2].(float64) < 21 {
		t.Errorf("setup page QR image = %v; want a decoded data:image/png", qr)
	}
	if href := browserEval[string](phone, `(document.querySelector('a[href^="otpauth:"]') || {}).href || ""`); !strings.HasPrefix(href, "otpauth://totp/") {
		t.Errorf("setup page: no otpauth:// link (got %q)", href)
	}
	phone.shot(shots, "setup.png")
	closePhone()

	// STEP 3, back in the browser: the first code activates the token.
	pc.goTo("/.otpgate/token")
	pc.fill(`#otp-confirm`, c.code())
	if st := pc.click(`form[action$="/token/confirm"] button[type="submit"]`); st != 200 {
		t.Fatalf("activate: status %d", st)
	}
	if info := pc.text(`.alert-success`); info == "" {
		t.Fatalf("activate: no confirmation; page:\n%s", pc.text("main"))
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries after enrolment; the transfer tried before it must not have run", n)
	}

	// A transfer from the bank's own form is paused and shown.
	pc.goTo("/menu")
	pc.click(`a[href="/transfer"]`)
	pc.fill(`input[name="to_bank"]`, "テスト銀行 本店")
	pc.fill(`input[name="to_account"]`, "普通 1234567")
	pc.fill(`input[name="amount"]`, "1500000")
	if st := pc.click(`input[type="submit"][value="実行"]`); st != 200 {
		t.Fatalf("transfer: status %d", st)
	}
	pc.wantPath("transfer", "/.otpgate/confirm/")
	pc.styled("confirm page")
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries before the code", n)
	}
	got := pc.rows("table.details")
	want := map[string]string{"お取引の種類": "振込・振替", "振込先金融機関": "テスト銀行 本店", "振込先口座": "普通 1234567", "金額": "1,500,000円"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("confirm page %s = %q; want %q (table %v)", k, got[k], v, got)
		}
	}
	if phishing := pc.text(`aside.phishing`); !strings.Contains(phishing, "ログイン") {
		t.Errorf("confirm page: phishing notice %q does not warn about codes at login", phishing)
	}
	if main := pc.text("main"); strings.Contains(main, "POST") || strings.Contains(main, "/transfer/execute") {
		t.Errorf("confirm page shows the request line:\n%s", main)
	}
	confirmShot := pc.shot(shots, "confirm.png")
	if b, err := os.ReadFile(confirmShot); err == nil {
		if err := os.WriteFile("/tmp/otpgate-confirm.png", b, 0o644); err != nil {
			t.Logf("copying the screenshot to /tmp: %v", err)
		}
	}

	// A wrong code: the page again, with the error and the attempts left.
	step := e.clock.Now().Unix() / 60
	wrong := browserWrongCode(c.secret, step)
	pc.fill(`#otp`, wrong)
	if st := pc.click(`form:has(#otp) button[type="submit"]`); st != 200 {
		t.Fatalf("wrong code: status %d; want 200 with the error", st)
	}
	errText := pc.text(`.alert-error`)
	if !strings.Contains(errText, "正しくありません") || !regexp.MustCompile(`[0-9]+\s*回`).MatchString(errText) {
		t.Errorf("wrong code: error %q; want 'incorrect' and the attempts left", errText)
	}
	if v := browserEval[string](pc, `document.querySelector("#otp").getAttribute("aria-invalid") || ""`); v != "true" {
		t.Errorf("wrong code: #otp aria-invalid = %q; want true", v)
	}
	if got := pc.rows("table.details")["金額"]; got != "1,500,000円" {
		t.Errorf("confirm page after a wrong code shows amount %q; want 1,500,000円", got)
	}
	pc.shot(shots, "confirm-wrong-code.png")
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries after a wrong code", n)
	}

	// The right code: the bank's own completion page, at the bank's URL.
	pc.fill(`#otp`, c.code())
	if st := pc.click(`form:has(#otp) button[type="submit"]`); st != 200 {
		t.Fatalf("right code: status %d; want the bank's 200", st)
	}
	pc.wantPath("right code", "/transfer/execute")
	done := pc.text("body")
	if !strings.Contains(done, "受け付けました") || !browserReceipt.MatchString(done) {
		t.Fatalf("right code: not the bank's completion page with a receipt:\n%s", done)
	}
	pc.shot(shots, "done.png")
	l := e.ledger()
	if len(l) != 1 || l[0].Op != "transfer" || l[0].User != "U001" || l[0].Params["amount"] != "1500000" ||
		l[0].Params["to_bank"] != "テスト銀行 本店" || l[0].Params["to_account"] != "普通 1234567" {
		t.Fatalf("ledger = %+v; want one transfer of 1500000 to テスト銀行 本店 普通 1234567 by U001", l)
	}
	if !strings.Contains(done, l[0].Receipt) {
		t.Errorf("completion page does not show the ledger's receipt %s", l[0].Receipt)
	}
	// In Japan time, as the gateway's pages: a Japanese customer reads it so.
	if at := l[0].At.In(time.FixedZone("JST", 9*60*60)).Format("2006年01月02日 15:04:05"); !strings.Contains(done, at) {
		t.Errorf("completion page does not show the receipt time %s (Japan time):\n%s", at, done)
	}

	// The bank's relative link resolves from where the browser shows the page.
	if st := pc.click(`a[href="../menu"]`); st != 200 {
		t.Fatalf("../menu: status %d", st)
	}
	pc.wantPath("../menu", "/menu")
	if u := pc.url(); u.Path != "/menu" {
		t.Errorf("../menu led to %s; want /menu", u)
	}
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries at the end; want 1", n)
	}

	// Five wrong codes on the next transfer lock the customer: the lock
	// page says so and sends them to the token page.
	pc.goTo("/menu")
	pc.click(`a[href="/transfer"]`)
	pc.fill(`input[name="to_bank"]`, "テスト銀行 本店")
	pc.fill(`input[name="to_account"]`, "普通 1234567")
	pc.fill(`input[name="amount"]`, "30000")
	pc.click(`input[type="submit"][value="実行"]`)
	pc.wantPath("second transfer", "/.otpgate/confirm/")
	var locked int64
	for range 5 {
		pc.fill(`#otp`, browserWrongCode(c.secret, e.clock.Now().Unix()/60))
		locked = pc.click(`form:has(#otp) button[type="submit"]`)
	}
	if locked != 423 {
		t.Fatalf("fifth wrong code: status %d; want the 423 lock page", locked)
	}
	pc.shot(shots, "locked.png")
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries after the lock; want 1", n)
	}
	t.Logf("browser walk-through took %s", time.Since(start).Round(time.Millisecond))
}

// browserWrongCode is a six-digit code that is not right for any time step
// near step, whatever window the gateway accepts.
func browserWrongCode(secret []byte, step int64) string { return wrongCodeAt(secret, step) }
