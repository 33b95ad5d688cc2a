package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/policy"
)

// validGateway is a configuration Validate accepts, for tests that change
// one thing in it.
func validGateway() *Gateway {
	g := &Gateway{
		Identity: &Identity{Source: "login_form"},
		Rules:    []policy.Rule{{Kind: policy.Transfer, Paths: []string{"/transfer/execute"}}},
	}
	g.SecretKey = "{env.OTPGATE_SECRET_KEY}"
	g.Mail = &app.MailConfig{From: "otp@bank.example.jp", Dir: "mail"}
	return g
}

// Validate refuses, for JSON configurations as for Caddyfiles, what would
// otherwise fail only later: at the first mail (a relay the gateway may
// not use), at the first held operation (a body too large to store), or
// quietly (a require_otp list that reads two ways).
func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(g *Gateway)
		want   string // "" accepted
	}{
		{"valid", func(*Gateway) {}, ""},
		{"smtp starttls", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: "smtp.example.jp:587"}}
		}, ""},
		{"smtp none on loopback", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: "127.0.0.1:25", TLS: "none"}}
		}, ""},
		{"smtp none to a remote relay", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: "smtp.example.jp:25", TLS: "none"}}
		}, `smtp smtp.example.jp:25: tls "none" is allowed only for a relay on the loopback interface`},
		{"smtp tls maybe", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: "smtp.example.jp:587", TLS: "maybe"}}
		}, `unknown tls mode "maybe"`},
		{"smtp without a host", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: ":587"}}
		}, "want host:port"},
		{"smtp port 0", func(g *Gateway) {
			g.Mail = &app.MailConfig{From: "otp@bank.example.jp", SMTP: &app.SMTPConfig{Address: "smtp.example.jp:0"}}
		}, "want host:port"},
		{"no mail", func(g *Gateway) { g.Mail = nil }, "mail is required"},
		{"mail dir and smtp", func(g *Gateway) { g.Mail.SMTP = &app.SMTPConfig{Address: "smtp.example.jp:587"} }, "either dir or smtp"},
		{"bad sender", func(g *Gateway) { g.Mail.From = "otp at bank" }, `mail_from "otp at bank": invalid sender address`},
		{"no sender", func(g *Gateway) { g.Mail.From = "" }, "no sender address"},
		{"digits 7", func(g *Gateway) { g.Digits = 7 }, "digits 7 must be 6 or 8"},
		{"max_failures 0 is the default", func(g *Gateway) { g.MaxFailures = 0 }, ""},
		{"max_failures 11", func(g *Gateway) { g.MaxFailures = 11 }, "max_failures 11 must be between 1 and 10"},
		{"max_failures -1", func(g *Gateway) { g.MaxFailures = -1 }, "max_failures -1"},
		{"period 1.5s", func(g *Gateway) { g.Period = 1500e6 }, "whole number of seconds"},
		{"period negative", func(g *Gateway) { g.Period = -60e9 }, "period -1m0s: want a positive duration"},
		{"link_lifetime negative", func(g *Gateway) { g.LinkLifetime = -1 }, "link_lifetime"},
		{"idle_timeout negative", func(g *Gateway) { g.Identity.IdleTimeout = -1 }, "identity idle_timeout"},
		{"algorithm MD5", func(g *Gateway) { g.Algorithm = "MD5" }, `algorithm "MD5"`},
		{"max_body at the limit", func(g *Gateway) { g.MaxBody = maxBodyLimit }, ""},
		{"max_body above what a held operation can store", func(g *Gateway) { g.MaxBody = 64 << 20 }, "max_body 67108864: want a size from 1 byte to 31 MiB"},
		{"max_body negative", func(g *Gateway) { g.MaxBody = -1 }, "max_body -1"},
		{"max_buffered twice max_body", func(g *Gateway) { g.MaxBody, g.MaxBuffered = 1<<20, 2<<20 }, ""},
		{"max_buffered below twice max_body", func(g *Gateway) { g.MaxBody, g.MaxBuffered = 1<<20, 2<<20-1 }, "max_buffered 2097151: want at least twice max_body (2097152 bytes"},
		{"max_buffered negative", func(g *Gateway) { g.MaxBuffered = -1 }, "max_buffered -1"},
		{"require_otp all", func(g *Gateway) { g.RequireOTP = []string{"all"} }, ""},
		{"require_otp ALL", func(g *Gateway) { g.RequireOTP = []string{"ALL"} }, ""},
		{"require_otp services", func(g *Gateway) { g.RequireOTP = []string{"S001", "S002"} }, ""},
		{"require_otp all beside a service", func(g *Gateway) { g.RequireOTP = []string{"S001", "all"} }, `require_otp "all" beside service IDs`},
		{"require_otp empty ID", func(g *Gateway) { g.RequireOTP = []string{""} }, "empty service ID"},
		{"public_url https", func(g *Gateway) { g.PublicURL = "https://ib.example-bank.jp/" }, ""},
		{"public_url http", func(g *Gateway) { g.PublicURL = "http://localhost:8080" }, ""},
		{"public_url with a path", func(g *Gateway) { g.PublicURL = "https://ib.example-bank.jp/otp" }, "want a scheme and host only"},
		{"public_url without scheme", func(g *Gateway) { g.PublicURL = "ib.example-bank.jp" }, "want a scheme and host only"},
		{"public_url ftp", func(g *Gateway) { g.PublicURL = "ftp://ib.example-bank.jp" }, "want a scheme and host only"},
		{"public_url with a query", func(g *Gateway) { g.PublicURL = "https://ib.example-bank.jp?x" }, "want a scheme and host only"},
		{"no identity", func(g *Gateway) { g.Identity = nil }, "identity is required"},
		{"no rules", func(g *Gateway) { g.Rules = nil }, "no rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := validGateway()
			tc.change(g)
			err := g.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v; want %q", err, tc.want)
			}
		})
	}
}

// A JSON configuration reaches Validate with what the Caddyfile parser
// would have refused: the checks hold there too.
func TestValidateJSON(t *testing.T) {
	t.Parallel()
	base := `{"identity":{"source":"login_form"},"secret_key":"{env.K}","rules":[{"kind":"transfer","paths":["/t"]}],`
	for _, tc := range []struct{ json, want string }{
		{`"mail":{"from":"otp@bank.example.jp","smtp":{"address":"relay.example.jp:25","tls":"none"}}}`, "loopback"},
		{`"mail":{"from":"otp@bank.example.jp","smtp":{"address":"relay.example.jp:25","tls":"maybe"}}}`, `unknown tls mode "maybe"`},
		{`"mail":{"from":"otp@bank.example.jp","dir":"mail"},"digits":9}`, "digits 9"},
		{`"mail":{"from":"otp@bank.example.jp","dir":"mail"},"max_body":1073741824}`, "max_body"},
		{`"mail":{"from":"otp@bank.example.jp","dir":"mail"},"require_otp":["all","S001"]}`, "beside service IDs"},
		{`"mail":{"from":"otp@bank.example.jp","dir":"mail"},"identity":{"source":"header","service":"{http.request.cookie.s}","user":"{http.vars.u}"}}`, "the client can set this placeholder"},
	} {
		var g Gateway
		if err := json.Unmarshal([]byte(base+tc.json), &g); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		if err := g.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v; want %q", tc.json, err, tc.want)
		}
	}
}

// The Caddyfile parser refuses the same mistakes where it can name the
// line (the identity allowlist, ranges, the relay), and refuses what it
// used to let a later line overwrite silently (a second identity or smtp).
func TestUnmarshalCaddyfileRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"digits 7", `digits "7": want 6 or 8`},
		{"max_failures 0", `max_failures "0": want a number of wrong codes, 1-10`},
		{"max_failures 11", `max_failures "11"`},
		{"skew 4", `skew "4": want a number of periods, 0-3`},
		{"skew -1", `skew "-1"`},
		{"max_body 64MiB", `max_body "64MiB": want a size such as 10MiB, at most 31MiB`},
		{"smtp relay.example.jp:25 {\ntls none\n}", `tls "none" is allowed only for a relay on the loopback interface`},
		{"smtp relay.example.jp:25 {\ntls none\n}", "Testfile:4"},
		{"smtp relay.example.jp:587\nsmtp relay2.example.jp:587", "smtp: given twice"},
		{"identity header {\nservice {http.request.cookie.s}\nuser {http.vars.u}\n}", "Testfile:5"},
		{"identity header {\nservice {http.request.cookie.s}\nuser {http.vars.u}\n}", "the client can set this placeholder"},
		{"identity header {\nservice {http.request.header.S}\nuser {http.request.header.U}\n}", "say who sets it"},
		{"identity header {\nservice {http.vars.s}\nuser {http.vars.u}\ntrusted\n}", "trusted: missing value"},
		{"identity login_form\nidentity login_form", "identity: given twice"},
	} {
		var g Gateway
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("otpgate {\n" + tc.in + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error containing %q", tc.in, err, tc.want)
		}
	}
	// A relay named by a placeholder has its value only where the
	// configuration runs: the parser leaves it to Validate.
	var g Gateway
	if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("otpgate {\nsmtp {env.SMTP_RELAY} {\ntls none\n}\n}")); err != nil {
		t.Errorf("smtp {env.SMTP_RELAY}: %v", err)
	}
}
