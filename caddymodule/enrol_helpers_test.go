package caddymodule

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"image/png"
	"io"
	"log"
	"math/big"
	"mime"
	"net"
	"net/http"
	netmail "net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/otpgate/otpgate/internal/audit"
)

// Helpers of the enrolment (token lifecycle) integration tests. Every
// top-level name starts with "enrol" so that the other integration tests of
// this package can add their own helpers freely.

// enrolMailFrom is the sender address the harness's Caddyfile configures.
const enrolMailFrom = "otp@test-bank.example"

// enrolRelay is a real SMTP server (go-smtp) on 127.0.0.1 that offers
// STARTTLS with a self-signed certificate, requires AUTH PLAIN (only inside
// TLS) and records every message it accepts, as the bank's relay would.
type enrolRelay struct {
	t          *testing.T
	user, pass string
	tlsConf    *tls.Config
	caFile     string // PEM of the relay's certificate, for the smtp block's ca_file
	port       int

	mu      sync.Mutex
	msgs    []enrolMail
	refuse  bool // answer DATA with 554
	srv     *smtp.Server
	ln      net.Listener
	serving chan struct{}
}

// enrolMail is one message as the relay received it.
type enrolMail struct {
	From    string   // envelope sender (MAIL FROM)
	To      []string // envelope recipients (RCPT TO)
	TLS     bool     // the session was encrypted (STARTTLS)
	Authed  bool     // the client authenticated
	Header  netmail.Header
	Subject string // decoded
	Body    string // decoded
}

// enrolStartRelay starts a relay that lives until the end of the test.
func enrolStartRelay(t *testing.T) *enrolRelay {
	t.Helper()
	r := &enrolRelay{t: t, user: "otpgate", pass: "relay-pass-" + rand.Text()[:8]}
	r.tlsConf, r.caFile = enrolCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	r.serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *enrolRelay) serve(ln net.Listener) {
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	srv.TLSConfig = r.tlsConf // STARTTLS; AUTH is refused before it
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	r.mu.Lock()
	r.srv, r.ln, r.serving = srv, ln, done
	r.mu.Unlock()
}

// stop shuts the relay down: connections to its port are refused.
func (r *enrolRelay) stop() {
	r.mu.Lock()
	srv, ln, done := r.srv, r.ln, r.serving
	r.srv, r.ln, r.serving = nil, nil, nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	ln.Close()
	<-done
}

// restart serves again on the same port.
func (r *enrolRelay) restart() {
	r.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(r.port)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("relay restart on port %d: %v", r.port, err)
	}
	r.serve(ln)
}

func (r *enrolRelay) setRefuse(v bool) {
	r.mu.Lock()
	r.refuse = v
	r.mu.Unlock()
}

// caddyfile is the smtp block that replaces the harness's mail_dir line.
func (r *enrolRelay) caddyfile() string {
	return fmt.Sprintf(`smtp 127.0.0.1:%d {
			username %s
			password %s
			tls starttls
			ca_file %s
			timeout 5s
		}`, r.port, r.user, r.pass, r.caFile)
}

// all returns the messages accepted so far.
func (r *enrolRelay) all() []enrolMail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]enrolMail(nil), r.msgs...)
}

// count is how many messages were accepted.
func (r *enrolRelay) count() int { return len(r.all()) }

// waitMail returns the newest message to addr whose subject ends with
// subjectEnd (the English part of the subject), waiting briefly for it.
func (r *enrolRelay) waitMail(addr, subjectEnd string) enrolMail {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msgs := r.all()
		for i := len(msgs) - 1; i >= 0; i-- {
			if strings.HasSuffix(msgs[i].Subject, subjectEnd) && len(msgs[i].To) == 1 && msgs[i].To[0] == addr {
				return msgs[i]
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, m := range msgs {
				got = append(got, fmt.Sprintf("%v %q", m.To, m.Subject))
			}
			r.t.Fatalf("no mail %q to %s; relay has %v", subjectEnd, addr, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkEnvelope checks what every mail of the gateway must be: from the
// configured sender, to exactly the customer's address, over STARTTLS with
// AUTH.
func (m enrolMail) checkEnvelope(t *testing.T, to string) {
	t.Helper()
	if m.From != enrolMailFrom {
		t.Errorf("mail %q: envelope sender %q; want the configured mail_from %q", m.Subject, m.From, enrolMailFrom)
	}
	if len(m.To) != 1 || m.To[0] != to {
		t.Errorf("mail %q: envelope recipients %v; want only %s", m.Subject, m.To, to)
	}
	if a, err := netmail.ParseAddress(m.Header.Get("From")); err != nil || a.Address != enrolMailFrom {
		t.Errorf("mail %q: From header %q; want %s", m.Subject, m.Header.Get("From"), enrolMailFrom)
	}
	if a, err := netmail.ParseAddress(m.Header.Get("To")); err != nil || a.Address != to {
		t.Errorf("mail %q: To header %q; want %s", m.Subject, m.Header.Get("To"), to)
	}
	if !m.TLS || !m.Authed {
		t.Errorf("mail %q: TLS %v, authenticated %v; want both (STARTTLS, AUTH PLAIN)", m.Subject, m.TLS, m.Authed)
	}
}

// The go-smtp backend.

func (r *enrolRelay) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &enrolSession{relay: r, conn: c}, nil
}

type enrolSession struct {
	relay  *enrolRelay
	conn   *smtp.Conn
	authed bool
	cur    enrolMail
}

func (s *enrolSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *enrolSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.relay.user || password != s.relay.pass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *enrolSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = enrolMail{From: from, TLS: isTLS, Authed: s.authed}
	return nil
}

func (s *enrolSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *enrolSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.relay.mu.Lock()
	refuse := s.relay.refuse
	s.relay.mu.Unlock()
	if refuse {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay refuses the message (test)"}
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	m := s.cur
	m.Header = msg.Header
	m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return err
	}
	if m.Body, err = enrolDecodeBody(msg); err != nil {
		return err
	}
	s.relay.mu.Lock()
	s.relay.msgs = append(s.relay.msgs, m)
	s.relay.mu.Unlock()
	return nil
}

// enrolDecodeBody reads a single-part body, base64 or not (the relay's
// goroutine cannot use decodeBody, which fails the test).
func enrolDecodeBody(msg *netmail.Message) (string, error) { return mailText(msg) }

func (s *enrolSession) Reset()        { s.cur = enrolMail{} }
func (s *enrolSession) Logout() error { return nil }

// enrolCert makes a self-signed certificate for 127.0.0.1 and writes it as
// PEM for the smtp block's ca_file (a bank's internal CA, in miniature).
func enrolCert(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "otpgate test relay"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(2 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "relay-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, path
}

// enrolLink finds the setup link in a setup mail.
func enrolLink(t *testing.T, m enrolMail) string {
	t.Helper()
	l := linkPattern.FindString(m.Body)
	if l == "" {
		t.Fatalf("setup mail %q has no setup link:\n%s", m.Subject, m.Body)
	}
	return l
}

// enrolSetupJSON runs STEP 2 on a fresh phone (no login, own cookie jar)
// through the JSON contract.
func enrolSetupJSON(e *env, link, service, user, pin string) (*http.Response, map[string]any) {
	phone := e.customer("", "")
	return phone.postJSON(strings.TrimPrefix(link, gatewayURL), map[string]string{"service_id": service, "user_id": user, "pin": pin})
}

// enrolViaRelay runs STEP 1-3 through the JSON contract with the setup mail
// taken from the relay, and makes c remember the secret.
func enrolViaRelay(c *customer, r *enrolRelay, email, pin string) {
	t := c.e.t
	t.Helper()
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	link := enrolLink(t, r.waitMail(email, "OTP token setup"))
	res, out = enrolSetupJSON(c.e, link, c.Service, c.ID, pin)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	uri, _ := out["otpauth_uri"].(string)
	code, step, secret := enrolCodeFromURI(t, uri, c.e.clock.Now())
	c.secret, c.lastStepUsed = secret, step
	res, out = c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": code})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("activate: %d %v", res.StatusCode, out)
	}
}

// enrolOTPAuth is an otpauth:// URI taken apart by the test itself.
type enrolOTPAuth struct {
	Label, Issuer, Algorithm string
	Secret                   []byte
	Digits                   int
	Period                   int64
}

// enrolParseURI reads a Key URI (otpauth://totp/Issuer:account?...).
func enrolParseURI(t *testing.T, uri string) enrolOTPAuth {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("otpauth URI %q: %v; want otpauth://totp/...", uri, err)
	}
	q := u.Query()
	var k enrolOTPAuth
	k.Label = strings.TrimPrefix(u.Path, "/")
	k.Issuer = q.Get("issuer")
	k.Algorithm = q.Get("algorithm")
	if k.Algorithm == "" {
		k.Algorithm = "SHA1"
	}
	k.Digits, k.Period = 6, 30 // the Key URI defaults
	if d := q.Get("digits"); d != "" {
		k.Digits, _ = strconv.Atoi(d)
	}
	if p := q.Get("period"); p != "" {
		k.Period, _ = strconv.ParseInt(p, 10, 64)
	}
	k.Secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(q.Get("secret"), "=")))
	if err != nil || len(k.Secret) == 0 {
		t.Fatalf("otpauth URI %q: secret: %v", uri, err)
	}
	return k
}

// enrolCodeFromURI computes the code for time at from an otpauth URI with
// the test's own RFC 6238 implementation, honouring the URI's period,
// digits and algorithm (what a token app does after scanning the QR code).
func enrolCodeFromURI(t *testing.T, uri string, at time.Time) (code string, step int64, secret []byte) {
	t.Helper()
	k := enrolParseURI(t, uri)
	if k.Period <= 0 || (k.Digits != 6 && k.Digits != 8) {
		t.Fatalf("otpauth URI %q: period %d, digits %d", uri, k.Period, k.Digits)
	}
	step = at.Unix() / k.Period
	return enrolTOTP(t, k.Secret, step, k.Digits, k.Algorithm), step, k.Secret
}

// enrolTOTP is RFC 6238 / RFC 4226 for SHA1, SHA256 and SHA512.
func enrolTOTP(t *testing.T, secret []byte, step int64, digits int, algorithm string) string {
	t.Helper()
	code := totp(secret, step, digits, algorithm)
	if code == "" {
		t.Fatalf("algorithm %q", algorithm)
	}
	return code
}

// enrolDecodeQR reads a PNG QR code with a real QR decoder.
func enrolDecodeQR(t *testing.T, pngBytes []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatalf("qr_png is not a PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatalf("QR bitmap: %v", err)
	}
	// gozxing's finder-pattern search misses a few clean codes that phone
	// scanners read; its harder search and its reader for pure (generated)
	// codes are what a scanner's retries amount to.
	var res *gozxing.Result
	for _, hints := range []map[gozxing.DecodeHintType]interface{}{
		nil, {gozxing.DecodeHintType_TRY_HARDER: true}, {gozxing.DecodeHintType_PURE_BARCODE: true},
	} {
		if res, err = qrcode.NewQRCodeReader().Decode(bmp, hints); err == nil {
			return res.GetText()
		}
	}
	t.Fatalf("QR code does not decode: %v", err)
	return ""
}

// enrolWrongCode returns a code that is right for no step in the window.
func enrolWrongCode(c *customer) string { return c.wrongCode() }

// enrolTokenState is GET /.otpgate/token as an API client.
func enrolTokenState(c *customer) map[string]any {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/token", nil)
	req.Header.Set("Accept", "application/json")
	res, body := c.do(req)
	var out map[string]any
	if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		c.e.t.Fatalf("GET /.otpgate/token: %d %s", res.StatusCode, body)
	}
	return out
}

// enrolExpires reads the expires of a token answer.
func enrolExpires(t *testing.T, out map[string]any) time.Time {
	t.Helper()
	s, _ := out["expires"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("expires %q in %v: %v", s, out, err)
	}
	return at
}

// enrolTransferForm is a transfer as a browser posts it.
var enrolTransferForm = url.Values{"to_bank": {"0005"}, "to_account": {"7654321"}, "amount": {"12000"}}

// enrolTransfer posts a transfer as a browser (303s are not followed).
func enrolTransfer(c *customer) *http.Response {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader(enrolTransferForm.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	res, _ := c.do(req)
	return res
}

// enrolTransferJSON posts the same transfer as an API client.
func enrolTransferJSON(c *customer) (*http.Response, map[string]any) {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader(enrolTransferForm.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, body := c.do(req)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	return res, out
}

// enrolPauseAndRelease pauses a transfer (JSON) and confirms it with the
// customer's next code: the bank executes it once.
func enrolPauseAndRelease(c *customer) {
	t := c.e.t
	t.Helper()
	before := len(c.e.ledger())
	res, out := enrolTransferJSON(c)
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || out["error"] != "otp_required" || id == "" {
		t.Fatalf("transfer: %d %v; want 401 otp_required", res.StatusCode, out)
	}
	if n := len(c.e.ledger()); n != before {
		t.Fatalf("ledger grew to %d before the code", n)
	}
	res, body := c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": c.code()})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d %v; want the bank's answer", res.StatusCode, body)
	}
	l := c.e.ledger()
	if len(l) != before+1 || l[len(l)-1].Op != "transfer" || l[len(l)-1].User != c.ID || l[len(l)-1].Params["amount"] != "12000" {
		t.Fatalf("ledger %+v; want one more transfer of 12000 by %s", l, c.ID)
	}
}

// enrolAdmin calls the admin API of the in-process Caddy.
func enrolAdmin(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, fmt.Sprintf("http://localhost:%d%s", adminPort, path), rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// enrolAdminToken is the admin API's view of one token.
func enrolAdminToken(t *testing.T, e *env, service, user string) map[string]any {
	t.Helper()
	q := url.Values{"service": {service}, "user": {user}, "db": {filepath.Join(e.dir, "otpgate.db")}}
	status, b := enrolAdmin(t, http.MethodGet, "/otpgate/token?"+q.Encode(), nil)
	var out map[string]any
	if status != http.StatusOK || json.Unmarshal(b, &out) != nil {
		t.Fatalf("admin token: %d %s", status, b)
	}
	return out
}

// enrolAuditTrail exports the audit trail through the admin API.
func enrolAuditTrail(t *testing.T, e *env) []audit.Record {
	t.Helper()
	status, b := enrolAdmin(t, http.MethodGet, "/otpgate/audit?db="+url.QueryEscape(filepath.Join(e.dir, "otpgate.db")), nil)
	if status != http.StatusOK {
		t.Fatalf("admin audit: %d %s", status, b)
	}
	var out []audit.Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// enrolFindAudit returns the records of one event for one user.
func enrolFindAudit(trail []audit.Record, ev audit.Event, service, user string) []audit.Record {
	var out []audit.Record
	for _, r := range trail {
		if r.Event == ev && r.Service == service && (user == "" || r.User == user) {
			out = append(out, r)
		}
	}
	return out
}

// enrolPage loads a gateway page as a browser in a language.
func enrolPage(c *customer, method, path, acceptLanguage string, form url.Values) (*http.Response, string) {
	c.e.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, gatewayURL+path, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if acceptLanguage != "" {
		req.Header.Set("Accept-Language", acceptLanguage)
	}
	res, body := c.do(req)
	// The token forms answer with the token page by POST-redirect-GET:
	// follow it as a browser does.
	if loc := res.Header.Get("Location"); method == http.MethodPost && res.StatusCode == http.StatusSeeOther &&
		strings.HasPrefix(path, "/.otpgate/token/") && strings.HasPrefix(loc, "/.otpgate/token?") {
		return enrolPage(c, http.MethodGet, loc, acceptLanguage, nil)
	}
	return res, html.UnescapeString(body)
}

var (
	enrolOTPAuthHref = regexp.MustCompile(`href="(otpauth://[^"]+)"`)
	enrolQRSrc       = regexp.MustCompile(`src="data:image/png;base64,([^"]+)"`)
	enrolSecretCode  = regexp.MustCompile(`class="secret-key"><code>([A-Z2-7 ]+)</code>`)
)

// enrolB64 decodes standard base64.
func enrolB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("not standard base64: %v", err)
	}
	return b
}

// The smtp block's ca_file is parsed (internal/app's TestSMTPCAFile checks
// what provisioning makes of it).
func TestEnrolSMTPCAFileOption(t *testing.T) {
	_, caFile := enrolCert(t)
	g := new(Gateway)
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`otpgate {
		mail_from otp@bank.example
		smtp relay.bank.internal:587 {
			tls starttls
			ca_file ` + caFile + `
		}
	}`))
	if err != nil || g.Mail == nil || g.Mail.SMTP == nil || g.Mail.SMTP.CAFile != caFile {
		t.Fatalf("parsing ca_file: %v, %+v", err, g.Mail)
	}
}
