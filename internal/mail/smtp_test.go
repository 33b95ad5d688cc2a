package mail

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"mime"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testCert returns a self-signed certificate for 127.0.0.1 and localhost, and
// a client TLS config that trusts exactly it.
func testCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "otpgate test relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool}
	return server, client
}

// received is one message as the relay saw it.
type received struct {
	from string
	to   []string
	data []byte
	tls  bool // whether the session that carried it was encrypted
}

// relay is a go-smtp backend that records what it is given.
type relay struct {
	user, pass string // empty user: no AUTH required

	mu       sync.Mutex
	messages []received
	commands []string // MAIL/RCPT/DATA seen, delivered or not
	sessions int
}

func (r *relay) NewSession(c *smtp.Conn) (smtp.Session, error) {
	r.mu.Lock()
	r.sessions++
	r.mu.Unlock()
	return &session{relay: r, conn: c}, nil
}

func (r *relay) record(cmd string) {
	r.mu.Lock()
	r.commands = append(r.commands, cmd)
	r.mu.Unlock()
}

func (r *relay) snapshot() ([]received, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.messages...), append([]string(nil), r.commands...)
}

type session struct {
	relay  *relay
	conn   *smtp.Conn
	authed bool
	cur    received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.relay.user || password != s.relay.pass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) allowed() error {
	if s.relay.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.relay.record("MAIL " + from)
	if err := s.allowed(); err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = received{from: from, tls: isTLS}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.relay.record("RCPT " + to)
	if err := s.allowed(); err != nil {
		return err
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	s.relay.record("DATA")
	if err := s.allowed(); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.relay.mu.Lock()
	s.relay.messages = append(s.relay.messages, s.cur)
	s.relay.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

type serverOpts struct {
	starttls *tls.Config // offer STARTTLS with this config
	implicit *tls.Config // speak TLS from the first byte
	insecure bool        // allow AUTH without TLS
}

// startRelay serves be on 127.0.0.1 and returns its port.
func startRelay(t *testing.T, be *relay, o serverOpts) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = o.insecure
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = testLogger{t}
	srv.TLSConfig = o.starttls
	if o.implicit != nil {
		srv.TLSConfig = o.implicit
		ln = tls.NewListener(ln, o.implicit)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		// Close misses a listener that Serve has not registered yet.
		ln.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("relay: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"relay:"}, v...)...) }

const (
	testFrom = "otp@bank.example.jp"
	testTo   = "taro@docomo.example.jp"
)

func testMessage() Message {
	return Message{
		To:      testTo,
		Subject: "【ワンタイムパスワード】トークン発行のご案内 / OTP token setup",
		Text:    "ワンタイムパスワードのトークン発行を受け付けました。\nhttps://bank.example.jp/.otpgate/setup/SECRETLINK\n利用開始パスワードを入力してください。\n",
	}
}

// parse reads a message the way a mail client would and returns its decoded
// subject and body.
func parse(t *testing.T, raw []byte) (*netmail.Message, string, string) {
	t.Helper()
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parsing message: %v\n%s", err, raw)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("decoding subject: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
		t.Fatalf("Content-Type = %q, want text/plain; charset=UTF-8", msg.Header.Get("Content-Type"))
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); !strings.EqualFold(cte, "base64") {
		t.Fatalf("Content-Transfer-Encoding = %q, want base64", cte)
	}
	body, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, msg.Body))
	if err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	return msg, subject, strings.ReplaceAll(string(body), "\r\n", "\n")
}

func TestSMTPStartTLSAuth(t *testing.T) {
	serverTLS, clientTLS := testCert(t)
	be := &relay{user: "gateway", pass: "s3cret"}
	port := startRelay(t, be, serverOpts{starttls: serverTLS})

	s := &SMTP{
		Host:      "127.0.0.1",
		Port:      port,
		Username:  "gateway",
		Password:  "s3cret",
		From:      "Demo Shinkin Bank <" + testFrom + ">",
		TLSConfig: clientTLS,
		Timeout:   10 * time.Second,
	}
	want := testMessage()
	if err := s.Send(context.Background(), want); err != nil {
		t.Fatalf("Send: %v", err)
	}

	msgs, _ := be.snapshot()
	if len(msgs) != 1 {
		t.Fatalf("relay received %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.from != testFrom {
		t.Errorf("MAIL FROM = %q, want %q", got.from, testFrom)
	}
	if len(got.to) != 1 || got.to[0] != testTo {
		t.Errorf("RCPT TO = %q, want [%q]", got.to, testTo)
	}
	if !got.tls {
		t.Error("mail was not sent inside TLS")
	}

	msg, subject, body := parse(t, got.data)
	if subject != want.Subject {
		t.Errorf("Subject = %q, want %q", subject, want.Subject)
	}
	if body != want.Text {
		t.Errorf("body = %q, want %q", body, want.Text)
	}
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != testFrom || from[0].Name != "Demo Shinkin Bank" {
		t.Errorf("From = %v (%v)", from, err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != testTo {
		t.Errorf("To = %v (%v)", to, err)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := msg.Header.Get("Message-ID"); !strings.HasSuffix(id, "@bank.example.jp>") {
		t.Errorf("Message-ID = %q, want one in the sender's domain", id)
	}
	if ua := msg.Header.Get("User-Agent") + msg.Header.Get("X-Mailer"); ua != "" {
		t.Errorf("mail advertises its software: %q", ua)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := testCert(t)
	be := &relay{user: "gateway", pass: "s3cret"}
	port := startRelay(t, be, serverOpts{implicit: serverTLS})

	s := &SMTP{Host: "127.0.0.1", Port: port, Username: "gateway", Password: "s3cret",
		From: testFrom, TLS: "tls", TLSConfig: clientTLS, Timeout: 10 * time.Second}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs, _ := be.snapshot()
	if len(msgs) != 1 {
		t.Fatalf("relay received %d messages, want 1", len(msgs))
	}
	if !msgs[0].tls {
		t.Error("mail was not sent inside TLS")
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	serverTLS, clientTLS := testCert(t)
	be := &relay{user: "gateway", pass: "s3cret"}
	port := startRelay(t, be, serverOpts{starttls: serverTLS})

	s := &SMTP{Host: "127.0.0.1", Port: port, Username: "gateway", Password: "wrong-password",
		From: testFrom, TLSConfig: clientTLS, Timeout: 10 * time.Second}
	m := testMessage()
	err := s.Send(context.Background(), m)
	if err == nil {
		t.Fatal("Send with a wrong password succeeded")
	}
	wantPrefix := "sending mail via 127.0.0.1:" + strconv.Itoa(port) + ": "
	if !strings.HasPrefix(err.Error(), wantPrefix) {
		t.Errorf("error %q does not start with %q", err, wantPrefix)
	}
	for _, secret := range []string{"wrong-password", "SECRETLINK", "利用開始パスワード"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains %q", err, secret)
		}
	}
	if msgs, _ := be.snapshot(); len(msgs) != 0 {
		t.Errorf("relay received %d messages, want 0", len(msgs))
	}
}

func TestSMTPRefusesCleartext(t *testing.T) {
	// A relay (or an attacker stripping STARTTLS) that offers no TLS.
	be := &relay{}
	port := startRelay(t, be, serverOpts{insecure: true})

	s := &SMTP{Host: "127.0.0.1", Port: port, From: testFrom, Timeout: 10 * time.Second}
	if err := s.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("Send without STARTTLS succeeded")
	} else {
		t.Logf("error (expected): %v", err)
	}
	msgs, cmds := be.snapshot()
	if len(msgs) != 0 || len(cmds) != 0 {
		t.Errorf("mail went out in clear text: messages %d, commands %q", len(msgs), cmds)
	}
}

func TestSMTPVerifiesCertificate(t *testing.T) {
	serverTLS, _ := testCert(t)
	be := &relay{user: "gateway", pass: "s3cret"}
	port := startRelay(t, be, serverOpts{starttls: serverTLS})

	// No TLSConfig: system roots, which do not trust the test certificate.
	s := &SMTP{Host: "127.0.0.1", Port: port, Username: "gateway", Password: "s3cret",
		From: testFrom, Timeout: 10 * time.Second}
	err := s.Send(context.Background(), testMessage())
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Fatalf("Send = %v, want a certificate verification error", err)
	}
	if msgs, cmds := be.snapshot(); len(msgs) != 0 || len(cmds) != 0 {
		t.Errorf("mail sent to an unverified relay: messages %d, commands %q", len(msgs), cmds)
	}
}

func TestSMTPNoneLoopback(t *testing.T) {
	be := &relay{}
	port := startRelay(t, be, serverOpts{insecure: true})

	s := &SMTP{Host: "127.0.0.1", Port: port, From: testFrom, TLS: "none", Timeout: 10 * time.Second}
	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if msgs, _ := be.snapshot(); len(msgs) != 1 {
		t.Fatalf("relay received %d messages, want 1", len(msgs))
	}
}

func TestSMTPNoneRefusesRemoteHost(t *testing.T) {
	for _, host := range []string{"smtp.example.jp", "192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1"} {
		t.Run(host, func(t *testing.T) {
			// 192.0.2.1 is TEST-NET-1: a dial would hang until the timeout,
			// so a quick error shows none was attempted.
			s := &SMTP{Host: host, Port: 25, From: testFrom, TLS: "none", Timeout: time.Minute}
			start := time.Now()
			err := s.Send(context.Background(), testMessage())
			if err == nil || !strings.Contains(err.Error(), "loopback") {
				t.Fatalf("Send = %v, want a loopback error", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: a connection was attempted", d)
			}
		})
	}
}

func TestSMTPConfigErrors(t *testing.T) {
	ok := SMTP{Host: "127.0.0.1", Port: 1, From: testFrom}
	tests := []struct {
		name string
		edit func(*SMTP)
		m    func(*Message)
	}{
		{"no host", func(s *SMTP) { s.Host = "" }, nil},
		{"unix socket", func(s *SMTP) { s.Host = "unix:///run/smtp.sock" }, nil},
		{"no from", func(s *SMTP) { s.From = "" }, nil},
		{"bad from", func(s *SMTP) { s.From = "not an address" }, nil},
		{"unknown tls", func(s *SMTP) { s.TLS = "ssl" }, nil},
		{"bad port", func(s *SMTP) { s.Port = 70000 }, nil},
		{"no recipient", nil, func(m *Message) { m.To = "" }},
		{"two recipients", nil, func(m *Message) { m.To = "a@example.jp, b@example.jp" }},
		{"header injection", nil, func(m *Message) { m.Subject = "hi\r\nBcc: evil@example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, m := ok, testMessage()
			if tt.edit != nil {
				tt.edit(&s)
			}
			if tt.m != nil {
				tt.m(&m)
			}
			if err := s.Send(context.Background(), m); err == nil {
				t.Fatal("Send succeeded")
			}
		})
	}
}

// silentListener accepts connections and never says a word, like a relay
// that hangs.
func silentListener(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestSMTPTimeout(t *testing.T) {
	port := silentListener(t)
	s := &SMTP{Host: "127.0.0.1", Port: port, From: testFrom, Timeout: 300 * time.Millisecond}
	start := time.Now()
	if err := s.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("Send to a silent relay succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v with a 300ms timeout", d)
	}
}

func TestSMTPContextCancel(t *testing.T) {
	port := silentListener(t)
	s := &SMTP{Host: "127.0.0.1", Port: port, From: testFrom, Timeout: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err := s.Send(ctx, testMessage())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v after cancel", d)
	}

	// Already cancelled: nothing is dialled.
	be := &relay{}
	port = startRelay(t, be, serverOpts{insecure: true})
	s = &SMTP{Host: "127.0.0.1", Port: port, From: testFrom, TLS: "none"}
	if err := s.Send(ctx, testMessage()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %v, want context.Canceled", err)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.sessions != 0 {
		t.Errorf("a session was opened with a cancelled context")
	}
}

func TestSMTPDefaults(t *testing.T) {
	if got := (&SMTP{Host: "smtp.example.jp"}).addr(); got != "smtp.example.jp:587" {
		t.Errorf("addr = %q", got)
	}
	if got := (&SMTP{Host: "smtp.example.jp", TLS: "tls"}).addr(); got != "smtp.example.jp:465" {
		t.Errorf("addr = %q", got)
	}
	if got := (&SMTP{Host: "::1", Port: 25}).addr(); got != "[::1]:25" {
		t.Errorf("addr = %q", got)
	}
	c := (&SMTP{Host: "smtp.example.jp"}).tlsConfig()
	if c.ServerName != "smtp.example.jp" || c.InsecureSkipVerify || c.MinVersion < tls.VersionTLS12 {
		t.Errorf("default TLS config: ServerName %q, skip %v, min %x", c.ServerName, c.InsecureSkipVerify, c.MinVersion)
	}
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true,
		"localhost.example.jp": false, "10.0.0.1": false, "0.0.0.0": false, "": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
