package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The heart of the gateway: a transfer is paused, shown, and released to
// the bank exactly once after a right code.
func TestTransferPausedThenReleasedOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	c.json = false

	form := url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"50000"}}
	res, _ := c.postForm("/transfer/execute", form)
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/.otpgate/confirm/") {
		t.Fatalf("transfer: status %d, Location %q; want 303 to the confirm page", res.StatusCode, res.Header.Get("Location"))
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries before the code", n)
	}
	confirm := res.Header.Get("Location")
	_, page := c.get(confirm)
	for _, want := range []string{"50,000円", "1234567", "0001", "振込先口座"} {
		if !strings.Contains(page, want) {
			t.Errorf("confirm page lacks %q", want)
		}
	}
	token := c.csrf(confirm)
	action := regexpAction(t, page)
	res, body := c.postForm(action, url.Values{"otp": {c.code()}, "csrf": {token}, "amount": {"99999999"}})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "R0000") {
		t.Fatalf("confirm: status %d; want the bank's completion page:\n%s", res.StatusCode, body)
	}
	l := e.ledger()
	if len(l) != 1 || l[0].Op != "transfer" || l[0].Params["amount"] != "50000" || l[0].User != "U001" {
		t.Fatalf("ledger = %+v; want one transfer of 50000 by U001", l)
	}
	res, _ = c.postForm(action, url.Values{"otp": {c.code()}, "csrf": {token}})
	if res.StatusCode != http.StatusGone || len(e.ledger()) != 1 {
		t.Fatalf("second submit: status %d, ledger %d; want 410 and still one entry", res.StatusCode, len(e.ledger()))
	}
}
