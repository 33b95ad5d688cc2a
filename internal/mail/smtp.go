package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of SMTP.TLS.
const (
	// TLSStartTLS connects in plain text and upgrades with STARTTLS before
	// anything else is sent. A relay that does not offer STARTTLS, or whose
	// certificate does not verify, gets no mail.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte ("SMTPS", port 465).
	TLSImplicit = "tls"
	// TLSNone sends in clear text. Allowed only to a relay on the loopback
	// interface (a local Postfix), where nothing crosses a network.
	TLSNone = "none"
)

// SMTP sends through an SMTP relay: the bank's own mail server or its
// provider's submission service. Each Send opens its own connection, so an
// SMTP value is safe for concurrent use; do not change its fields while
// sends are running.
type SMTP struct {
	// Host is the relay's host name or IP address. With TLS "starttls" or
	// "tls" the relay's certificate must be valid for this name.
	Host string
	// Port is the relay's TCP port. Default: 587 (465 with TLS "tls").
	Port int
	// Username for SMTP AUTH. Empty: no authentication. Credentials are only
	// ever sent inside TLS, or to a loopback relay with TLS "none". The
	// strongest mechanism the relay offers is used (SCRAM, then PLAIN, LOGIN).
	Username string
	// Password for SMTP AUTH.
	Password string
	// From is the fixed sender address customers whitelist, such as
	// "otp@bank.example.jp" or "Demo Shinkin Bank <otp@bank.example.jp>".
	// It is both the From header and the envelope sender (MAIL FROM).
	// Required.
	From string
	// TLS is how the connection is protected: "starttls", "tls" or "none"
	// (see TLSStartTLS, TLSImplicit, TLSNone). Default: "starttls", mandatory.
	TLS string
	// Timeout bounds one whole delivery: connecting, TLS, authentication and
	// the message. Default: 30s.
	Timeout time.Duration
	// TLSConfig replaces the default TLS settings, e.g. to trust a private
	// CA. Its ServerName defaults to Host. Default: system roots, the
	// certificate verified for Host, TLS 1.2 or newer.
	TLSConfig *tls.Config
}

const (
	defaultSubmissionPort = 587
	defaultSMTPSPort      = 465
	defaultTimeout        = 30 * time.Second
)

// Send delivers m through the relay. Errors name the relay
// ("sending mail via smtp.example.jp:587: ...") and never contain the body.
//
// Once the relay has accepted the message (end of DATA), Send reports
// success even if closing the session fails afterwards: the relay has taken
// responsibility for the mail, and an error would make the caller send the
// customer a second copy.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	addr := s.addr()
	if err := s.send(ctx, m); err != nil {
		return fmt.Errorf("sending mail via %s: %w", addr, err)
	}
	return nil
}

func (s *SMTP) mode() string {
	if s.TLS == "" {
		return TLSStartTLS
	}
	return strings.ToLower(s.TLS)
}

func (s *SMTP) port() int {
	switch {
	case s.Port != 0:
		return s.Port
	case s.mode() == TLSImplicit:
		return defaultSMTPSPort
	default:
		return defaultSubmissionPort
	}
}

func (s *SMTP) addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.port()))
}

func (s *SMTP) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return defaultTimeout
}

func (s *SMTP) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.TLSConfig != nil {
		c = s.TLSConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = s.Host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// Check refuses configurations that cannot work or would be unsafe (an
// unknown TLS mode, clear text to a relay off this machine), before any
// connection is made. Send checks again; call Check when the configuration
// is loaded so that a mistake is found then, not at the first mail.
func (s *SMTP) Check() error {
	if s.Host == "" {
		return errors.New("no relay host configured")
	}
	// go-mail reads "unix://..." as a socket path; a host is all we accept.
	if strings.ContainsAny(s.Host, "/ ") {
		return fmt.Errorf("invalid relay host %q", s.Host)
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("invalid relay port %d", s.Port)
	}
	switch s.mode() {
	case TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !isLoopbackHost(s.Host) {
			return fmt.Errorf("tls %q is allowed only for a relay on the loopback interface, not %q", TLSNone, s.Host)
		}
	default:
		return fmt.Errorf("unknown tls mode %q (want %q, %q or %q)", s.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	return nil
}

func (s *SMTP) send(ctx context.Context, m Message) error {
	if err := s.Check(); err != nil {
		return err
	}
	msg, err := newMsg(s.From, m, time.Now())
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()

	mode := s.mode()
	tlsConf := s.tlsConfig()

	// go-mail bounds each command with its timeout but ignores the context
	// once connected; closing the connection when the context ends makes a
	// cancelled request or the overall Timeout stop a stalled relay.
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			conn.Close()
		}
	})
	defer stop()

	dial := func(dctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(dctx, network, address)
		if err != nil {
			return nil, err
		}
		// Host was checked before dialling; this checks where the name
		// actually led, since "localhost" goes through /etc/hosts and the
		// resolver.
		if mode == TLSNone && !isLoopbackAddr(c.RemoteAddr()) {
			c.Close()
			return nil, fmt.Errorf("tls %q: %s is not a loopback address", TLSNone, c.RemoteAddr())
		}
		if mode == TLSImplicit {
			tc := tls.Client(c, tlsConf)
			if err := tc.HandshakeContext(dctx); err != nil {
				c.Close()
				return nil, err
			}
			// go-mail's SMTP client recognises a *tls.Conn as encrypted,
			// which lets PLAIN and LOGIN authenticate over it.
			c = tc
		}
		mu.Lock()
		conn = c
		mu.Unlock()
		if ctx.Err() != nil {
			c.Close()
		}
		return c, nil
	}

	opts := []gomail.Option{
		gomail.WithPort(s.port()),
		gomail.WithTimeout(s.timeout()),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	switch mode {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		// Implicit TLS is established by dial above; plain text is what
		// "none" means. Either way go-mail must not try STARTTLS.
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.Username != "" {
		mechs := []gomail.SMTPAuthType{
			gomail.SMTPAuthSCRAMSHA256PLUS, gomail.SMTPAuthSCRAMSHA256,
			gomail.SMTPAuthSCRAMSHA1PLUS, gomail.SMTPAuthSCRAMSHA1,
			gomail.SMTPAuthPlain, gomail.SMTPAuthLogin,
		}
		if mode == TLSNone {
			// The peer was verified to be on this machine, so a clear-text
			// password does not leave it.
			mechs = []gomail.SMTPAuthType{
				gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc,
			}
		}
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(mechs...),
			gomail.WithUsername(s.Username),
			gomail.WithPassword(s.Password),
		)
	}

	client, err := gomail.NewClient(s.Host, opts...)
	if err != nil {
		return err
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if err != nil && msg.IsDelivered() {
		return nil
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %v", context.Cause(ctx), err)
	}
	return err
}

// isLoopbackHost reports whether host names this machine without a network
// in between: "localhost" or a loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

func isLoopbackAddr(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	return false
}

// Interface guards
var _ Sender = (*SMTP)(nil)
