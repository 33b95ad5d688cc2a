package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

// Enrolment a phished password cannot take over, in the configuration a
// bank gets when it says nothing (enrol_address omitted): a setup link goes
// only to the address the bank registered; a trivial activation PIN is
// refused; the registered addresses hear of the enrolment.
func TestEnrolDefaultConfigurationRegisteredOnly(t *testing.T) {
	opt := envOptions{}
	e := newEnv(t, opt)
	cfg := e.caddyfile(opt)
	if !strings.Contains(cfg, "enrol_address any\n") {
		t.Fatal("the test configuration no longer says enrol_address any; this test removes that line")
	}
	gwLoad(t, strings.Replace(cfg, "enrol_address any\n", "", 1))
	waitServing(t)

	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": "attacker@evil.example", "pin": "4829"})
	if res.StatusCode != http.StatusForbidden || out["error"] != "email_not_registered" {
		t.Fatalf("issue to an address the bank did not register: %d %v; want 403 email_not_registered", res.StatusCode, out)
	}
	if n := mailsTo(t, e, "attacker@evil.example"); n != 0 {
		t.Fatalf("%d mails went to the unregistered address", n)
	}

	if status, out := registeredImport(t, e, "service_id,user_id,email\nS001,U001,u001@mobile.example\nS001,,keiri@corp.example\n", "yamada"); status != http.StatusOK {
		t.Fatalf("import: %d %v", status, out)
	}
	for _, pin := range []string{"1111", "1234", "9876"} {
		res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": "u001@mobile.example", "pin": pin})
		if res.StatusCode != http.StatusBadRequest || out["error"] != "pin_trivial" {
			t.Errorf("trivial PIN %s: %d %v; want 400 pin_trivial", pin, res.StatusCode, out)
		}
	}
	c.enrol() // to u001@mobile.example, the registered address, with a PIN of no pattern
	if n := mailsTo(t, e, "keiri@corp.example"); n != 1 {
		t.Errorf("%d mails to the company's registered address; want the notice of the enrolment", n)
	}
	if n := mailsTo(t, e, "attacker@evil.example"); n != 0 {
		t.Errorf("%d mails went to the unregistered address", n)
	}
}
