package caddymodule

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/policy"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`otpgate {
		database /var/lib/otpgate/otpgate.db
		secret_key {env.KEY}
		retired_keys {env.OLD1} {env.OLD2}
		issuer "デモ信用組合"
		period 30s
		digits 8
		algorithm SHA256
		skew 0
		max_failures 3
		lock_duration 30m
		challenge_lifetime 2m
		max_body 1MiB
		max_buffered 64MiB
		validity 180d
		renew_window 14d
		link_lifetime 12h
		require_otp S001 S002
		public_url https://ib.example.jp
		home /menu
		identity login_form {
			path /Login.do
			service_field corpId
			user_field userId
			cookie SESSIONID
			success_status 302
			success_location /top
			logout_path /Logout.do
			idle_timeout 20m
			max_age 8h
		}
		mail_from otp@example.jp
		smtp smtp.example.jp:587 {
			username gw
			password {env.SMTP_PASSWORD}
			tls starttls
			timeout 10s
		}
		rule transfer furikomi {
			path /transfer/execute /furikomi/*/kakutei
			method POST PUT
			param mode execute
			param confirm
			show amount 金額 Amount
			show to_account 口座
			charset shift_jis
		}
	}`)
	var g Gateway
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	skew := uint(0)
	want := Gateway{
		StoreSettings: app.StoreSettings{Database: "/var/lib/otpgate/otpgate.db", SecretKey: "{env.KEY}", RetiredKeys: []string{"{env.OLD1}", "{env.OLD2}"},
			Issuer: "デモ信用組合", Digits: 8, Algorithm: "SHA256", Skew: &skew, MaxFailures: 3, RequireOTP: []string{"S001", "S002"},
			Mail: &app.MailConfig{From: "otp@example.jp", SMTP: &app.SMTPConfig{Address: "smtp.example.jp:587", Username: "gw", Password: "{env.SMTP_PASSWORD}", TLS: "starttls"}}},
		MaxBody: 1 << 20, MaxBuffered: 64 << 20, PublicURL: "https://ib.example.jp", Home: "/menu",
		Identity: &Identity{Source: "login_form", LoginPath: "/Login.do", ServiceField: "corpId", UserField: "userId",
			Cookie: "SESSIONID", SuccessStatus: []int{302}, SuccessLocation: "/top", LogoutPath: "/Logout.do"},
		Rules: []policy.Rule{{Name: "furikomi", Kind: policy.Transfer, Paths: []string{"/transfer/execute", "/furikomi/*/kakutei"},
			Methods: []string{"POST", "PUT"}, Params: []policy.Condition{{Name: "mode", Value: "execute"}, {Name: "confirm"}},
			Show: []policy.Field{{Name: "amount", Label: "金額", LabelEn: "Amount"}, {Name: "to_account", Label: "口座"}}, Charset: "shift_jis"}},
	}
	// Durations are compared apart: they are the parsed values.
	durations := map[string][2]int64{
		"period": {int64(g.Period), 30e9}, "lock_duration": {int64(g.LockDuration), 30 * 60e9},
		"challenge_lifetime": {int64(g.ChallengeLifetime), 120e9}, "validity": {int64(g.Validity), 180 * 24 * 3600e9},
		"renew_window": {int64(g.RenewWindow), 14 * 24 * 3600e9}, "link_lifetime": {int64(g.LinkLifetime), 12 * 3600e9},
		"idle_timeout": {int64(g.Identity.IdleTimeout), 20 * 60e9}, "max_age": {int64(g.Identity.MaxAge), 8 * 3600e9},
		"smtp timeout": {int64(g.Mail.SMTP.Timeout), 10e9},
	}
	for name, v := range durations {
		if v[0] != v[1] {
			t.Errorf("%s = %d; want %d", name, v[0], v[1])
		}
	}
	g.Period, g.LockDuration, g.ChallengeLifetime, g.Validity, g.RenewWindow, g.LinkLifetime = 0, 0, 0, 0, 0, 0
	g.Identity.IdleTimeout, g.Identity.MaxAge, g.Mail.SMTP.Timeout = 0, 0, 0
	got, _ := json.Marshal(g)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("parsed\n%s\nwant\n%s", got, exp)
	}
}

// Every configuration error names the directive, the bad value and what is
// expected.
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`otpgate { digits six }`, `digits "six": want 6 or 8`},
		{`otpgate { period soon }`, `period "soon": want a duration`},
		{`otpgate { max_body lots }`, `max_body "lots": want a size`},
		{`otpgate { max_buffered 0 }`, `max_buffered "0": want a size`},
		{`otpgate { skew -1 }`, `skew "-1": want a number of periods`},
		{`otpgate { colour blue }`, `unrecognized otpgate option "colour"`},
		{`otpgate { rule wire { path /x } }`, `rule "wire": unknown kind`},
		{`otpgate { rule transfer { show } }`, `show wants a field name`},
		{`otpgate { rule transfer { method POST } }`, `rule transfer: no path`},
		{`otpgate { rule transfer { path /x
			colour red } }`, `unrecognized option "colour"`},
		{`otpgate { identity ldap }`, `identity "ldap": want login_form or header`},
		{`otpgate { identity login_form { success_status ok } }`, `success_status "ok": want an HTTP status code`},
		{`otpgate { identity header { cookie X } }`, `unrecognized option "cookie"`},
		{`otpgate { smtp relay:25 { tls maybe } }`, `smtp tls "maybe": want starttls, tls or none`},
		{`otpgate { database }`, `database: missing value`},
		{`otpgate { database a b }`, `database: one value expected, got extra "b"`},
		{`otpgate { require_otp }`, `require_otp: want 'all' or service IDs`},
	} {
		var g Gateway
		// Blocks need line breaks; the table keeps each case on one line.
		in := strings.NewReplacer("{ ", "{\n", " }", "\n}").Replace(tc.in)
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// Caddyfile.example adapts (its JSON is a golden file of
// TestCaddyfileAdapt) and keeps saying what an example must: the directive
// orders itself before reverse_proxy without an "order" line, all five
// operation kinds are protected, paths are relative, the key comes from
// the environment, every service requires OTP, and Validate accepts it.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, err := adaptCaddyfile(t, src, "Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var gw Gateway
	for _, h := range adaptedHandlers(t, out) {
		order = append(order, h.name)
		if h.name == "otpgate" {
			if err := json.Unmarshal(h.raw, &gw); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(order, ",") != "otpgate,reverse_proxy" {
		t.Errorf("handler order %v; want otpgate before reverse_proxy", order)
	}
	kinds := map[policy.Kind]bool{}
	for _, r := range gw.Rules {
		kinds[r.Kind] = true
	}
	for _, k := range []policy.Kind{policy.Transfer, policy.BillPayment, policy.BulkTransfer, policy.TokenManagement, policy.UserChange} {
		if !kinds[k] {
			t.Errorf("Caddyfile.example does not protect %s", k)
		}
	}
	if gw.SecretKey != "{env.OTPGATE_SECRET_KEY}" || gw.Database != "otpgate.db" || gw.Mail == nil || gw.Mail.Dir != "mail" {
		t.Errorf("example must keep relative paths and an env key: %+v", gw)
	}
	if len(gw.RequireOTP) != 1 || gw.RequireOTP[0] != "all" {
		t.Errorf("example require_otp = %v; want all", gw.RequireOTP)
	}
	if err := gw.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
