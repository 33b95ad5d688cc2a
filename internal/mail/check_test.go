package mail

import (
	"strings"
	"testing"
)

// Check finds, before any connection, what Send would refuse: the gateway
// calls it when the configuration loads, so a relay that can never be used
// is refused then and not at the first customer's mail.
func TestSMTPCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    SMTP
		want string // "" accepted
	}{
		{SMTP{Host: "smtp.example.jp"}, ""},
		{SMTP{Host: "smtp.example.jp", TLS: "tls", Port: 465}, ""},
		{SMTP{Host: "localhost", TLS: "none", Port: 25}, ""},
		{SMTP{Host: "127.0.0.1", TLS: "NONE"}, ""},
		{SMTP{Host: "smtp.example.jp", TLS: "none"}, `allowed only for a relay on the loopback interface, not "smtp.example.jp"`},
		{SMTP{Host: "10.0.0.1", TLS: "none"}, "loopback"},
		{SMTP{Host: "smtp.example.jp", TLS: "maybe"}, `unknown tls mode "maybe"`},
		{SMTP{Host: ""}, "no relay host"},
		{SMTP{Host: "/var/run/smtp.sock"}, "invalid relay host"},
		{SMTP{Host: "smtp.example.jp", Port: 70000}, "invalid relay port"},
	} {
		err := tc.s.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Check() = %v; want %q", tc.s, err, tc.want)
		}
	}
}

func TestCheckSender(t *testing.T) {
	t.Parallel()
	for from, want := range map[string]string{
		"otp@bank.example.jp":                     "",
		"Demo Shinkin Bank <otp@bank.example.jp>": "",
		"":                                    "no sender address",
		"  ":                                  "no sender address",
		"otp at bank":                         "invalid sender address",
		"otp@bank.example.jp, x@evil.example": "invalid sender address",
	} {
		err := CheckSender(from)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckSender(%q) = %v; want %q", from, err, want)
		}
	}
}
