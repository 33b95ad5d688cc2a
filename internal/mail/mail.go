// Package mail composes and delivers the mails otpgate sends to customers: the
// setup link of a new software token and the notices of every change to it
// (activated, renewed, revoked, reset, locked, unlocked, renewal due).
//
// Compose builds the text; a Sender delivers it. SMTP hands mail to the bank's
// relay over TLS; Dir writes .eml files into a folder for the demo and for
// development. Both write the same RFC 5322 message: UTF-8, base64 body,
// MIME encoded-word subject.
package mail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
)

// Message is one mail to one customer.
type Message struct {
	// To is the customer's address (one address, "user@example.jp").
	To string
	// Subject is the subject line, UTF-8; it must be one line.
	Subject string
	// Text is the plain-text body, UTF-8. Line breaks may be "\n"; they are
	// written as CRLF.
	Text string
}

// Sender delivers messages. Implementations are safe for concurrent use.
type Sender interface {
	// Send delivers m or returns why it could not. Errors never contain the
	// message body, which may hold a setup link.
	Send(ctx context.Context, m Message) error
}

// CheckSender refuses a sender address no mail can carry: empty, or not
// an RFC 5322 address. Check the configured address when it is loaded,
// not at the first mail.
func CheckSender(from string) error {
	_, err := parseSender(from)
	return err
}

func parseSender(from string) (*mail.Address, error) {
	if strings.TrimSpace(from) == "" {
		return nil, errors.New("no sender address configured")
	}
	sender, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("invalid sender address %q: %v", from, err)
	}
	return sender, nil
}

// newMsg builds the RFC 5322 message shared by every Sender, so what the demo
// folder shows is byte for byte the kind of mail the relay receives.
func newMsg(from string, m Message, now time.Time) (*gomail.Msg, error) {
	sender, err := parseSender(from)
	if err != nil {
		return nil, err
	}
	to, err := parseRecipient(m.To)
	if err != nil {
		return nil, err
	}
	// A line break in the subject would start a header of the caller's
	// choosing; refuse rather than rely on the encoder to neutralise it.
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, errors.New("subject contains a line break")
	}
	if !utf8.ValidString(m.Subject) || !utf8.ValidString(m.Text) {
		return nil, errors.New("message is not valid UTF-8")
	}

	// Base64 rather than quoted-printable: Japanese text is all non-ASCII,
	// where quoted-printable triples the size and base64 is what Japanese
	// mobile carriers' clients handle best.
	msg := gomail.NewMsg(
		gomail.WithCharset(gomail.CharsetUTF8),
		gomail.WithEncoding(gomail.EncodingB64),
		// The default User-Agent would advertise the library and its version.
		gomail.WithNoDefaultUserAgent(),
	)
	msg.FromMailAddress(sender)
	msg.ToMailAddress(to)
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now)
	// go-mail's own Message-ID names the gateway's host; the sender's domain
	// reveals nothing and is what receiving filters expect.
	msg.SetMessageIDWithValue(rand.Text() + "@" + domainOf(sender.Address))
	// RFC 3834: automatic notices must not trigger vacation auto-replies.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, crlf(m.Text))
	return msg, nil
}

// parseRecipient accepts exactly one address. A list would let one mail about
// one customer's token reach someone else.
func parseRecipient(to string) (*mail.Address, error) {
	if strings.TrimSpace(to) == "" {
		return nil, errors.New("no recipient address")
	}
	addr, err := mail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("invalid recipient address: %v", err)
	}
	return addr, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return "localhost"
}

// crlf puts text lines into the canonical form RFC 2045 §6.8 asks for before
// base64 encoding, so every client shows the same line breaks.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}
