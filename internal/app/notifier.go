package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/mail"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/token"
)

// MailConfig says how setup links and security notices reach customers.
// Exactly one of Dir and SMTP is set.
type MailConfig struct {
	// From is the fixed sender address; publish it so customers can
	// whitelist it. Required.
	From string `json:"from"`
	// Dir writes each mail as an .eml file into this folder instead of
	// sending it (demo, development). Created with mode 0700.
	Dir string `json:"dir,omitempty"`
	// SMTP sends through a relay.
	SMTP *SMTPConfig `json:"smtp,omitempty"`
}

// SMTPConfig is an SMTP relay.
type SMTPConfig struct {
	// Address is host:port of the relay. Port default: 587
	Address string `json:"address"`
	// Username for SMTP AUTH; empty: no authentication.
	Username string `json:"username,omitempty"`
	// Password for SMTP AUTH; use a placeholder such as {env.SMTP_PASSWORD}.
	Password string `json:"password,omitempty"`
	// TLS is "starttls" (mandatory STARTTLS), "tls" (implicit TLS, port
	// 465) or "none" (loopback relays only). Default: starttls
	TLS string `json:"tls,omitempty"`
	// CAFile is a PEM file of root certificates to trust besides the
	// system's, for a relay whose certificate a private CA signed (a bank's
	// internal mail server). Default: the system roots only.
	CAFile string `json:"ca_file,omitempty"`
	// Timeout of one delivery. Default: 30s
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

func (m *MailConfig) notifier(repl *caddy.Replacer, issuer, contact string) (mailNotifier, error) {
	s, from, err := m.sender(repl)
	if err != nil {
		return mailNotifier{}, err
	}
	return mailNotifier{sender: s, issuer: issuer, from: from, contact: contact}, nil
}

// validate checks the mail settings as Provision reads them (placeholders
// replaced), so that a relay that can never be used is refused at load, not
// at the first mail a customer waits for.
func (m *MailConfig) validate() error {
	_, _, err := m.sender(caddy.NewReplacer())
	return err
}

// sender builds and checks the configured sender; from is the sender
// address.
func (m *MailConfig) sender(repl *caddy.Replacer) (s mail.Sender, from string, err error) {
	if m == nil {
		return nil, "", errors.New("otpgate: mail is required: setup links are mailed (use mail_dir for a folder of .eml files, or smtp)")
	}
	from = repl.ReplaceAll(m.From, "")
	if err := mail.CheckSender(from); err != nil {
		return nil, "", fmt.Errorf("otpgate: mail_from %q: %v; set the fixed sender address customers whitelist, e.g. otp@bank.example.jp", m.From, err)
	}
	switch {
	case m.Dir != "" && m.SMTP != nil:
		return nil, "", errors.New("otpgate: mail: set either dir or smtp, not both")
	case m.Dir != "":
		return &mail.Dir{Path: repl.ReplaceAll(m.Dir, ""), From: from}, from, nil
	case m.SMTP == nil:
		return nil, "", errors.New("otpgate: mail: set dir or smtp")
	}
	relay, err := m.SMTP.relay(repl, from)
	if err != nil {
		return nil, "", err
	}
	if m.SMTP.CAFile != "" {
		if relay.TLSConfig, err = extraRoots(repl.ReplaceAll(m.SMTP.CAFile, "")); err != nil {
			return nil, "", err
		}
	}
	return relay, from, nil
}

// relay builds and checks the relay, all but its ca_file.
func (c *SMTPConfig) relay(repl *caddy.Replacer, from string) (*mail.SMTP, error) {
	host, portText, err := net.SplitHostPort(repl.ReplaceAll(c.Address, ""))
	if err != nil {
		host, portText = repl.ReplaceAll(c.Address, ""), "587"
	}
	port, err := strconv.Atoi(portText)
	if err != nil || host == "" || port < 1 || port > 65535 {
		return nil, fmt.Errorf("otpgate: smtp address %q: want host:port", c.Address)
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("otpgate: smtp timeout %s: want a positive duration such as 30s", time.Duration(c.Timeout))
	}
	relay := &mail.SMTP{Host: host, Port: port, Username: repl.ReplaceAll(c.Username, ""), Password: repl.ReplaceAll(c.Password, ""),
		From: from, TLS: c.TLS, Timeout: time.Duration(c.Timeout)}
	if err := relay.Check(); err != nil {
		return nil, fmt.Errorf("otpgate: smtp %s: %v", c.Address, err)
	}
	return relay, nil
}

// extraRoots is a TLS configuration that trusts the system roots and the
// certificates in the PEM file at path.
func extraRoots(path string) (*tls.Config, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("otpgate: smtp ca_file: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("otpgate: smtp ca_file %s: no PEM certificate in it", path)
	}
	return &tls.Config{RootCAs: pool}, nil
}

// mailNotifier turns lifecycle notices into mails: at once for the mails
// an issue depends on (Notify), from the outbox for the rest (deliver).
type mailNotifier struct {
	sender mail.Sender
	issuer string
	// from is the sender address, named on the token page so customers
	// can let it through their filters before the mail is sent; contact
	// is the bank's contact line, at the foot of every mail.
	from, contact string
}

func (n mailNotifier) Notify(ctx context.Context, no token.Notice) error {
	msg, err := mail.Compose(mail.Event(no.Event), no.Email, mail.Data{
		ServiceID: no.User.Service, UserID: no.User.ID, Issuer: n.issuer, Link: no.Link, LinkExpires: no.LinkExpires,
		Expires: no.Expires, At: no.At, Contact: n.contact,
	})
	if err != nil {
		return err
	}
	return n.sender.Send(ctx, msg)
}

// deliver mails a notice queued in the outbox (outbox.Sender.Deliver). A
// notice that cannot be composed never will be, so it is given up on at
// once rather than retried.
func (n mailNotifier) deliver(ctx context.Context, no outbox.Notice) error {
	msg, err := mail.Compose(mail.Event(no.Event), no.To, mail.Data{
		ServiceID: no.Service, UserID: no.User, Issuer: n.issuer, Expires: no.Expires, At: no.At, Contact: n.contact,
	})
	if err != nil {
		return outbox.Permanent(err)
	}
	return n.sender.Send(ctx, msg)
}

// Interface guards
var _ token.Notifier = mailNotifier{}
