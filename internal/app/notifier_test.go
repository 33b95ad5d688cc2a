package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/mail"
)

// Provisioning trusts the smtp block's ca_file beside the system roots,
// with verification on, and refuses a file that holds no certificate
// rather than silently trusting only the system roots.
func TestSMTPCAFile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otpgate test relay CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "relay-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &MailConfig{From: "otp@bank.example", SMTP: &SMTPConfig{Address: "relay.bank.internal:587", TLS: "starttls", CAFile: caFile}}
	n, err := m.notifier(caddy.NewReplacer(), "bank", "")
	if err != nil {
		t.Fatalf("notifier with a PEM ca_file: %v", err)
	}
	relay := n.sender.(*mail.SMTP)
	if relay.TLSConfig == nil || relay.TLSConfig.RootCAs == nil || relay.TLSConfig.InsecureSkipVerify {
		t.Fatalf("TLS config %+v; want extra roots, verification on", relay.TLSConfig)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		m.SMTP.CAFile = bad
		if _, err := m.notifier(caddy.NewReplacer(), "bank", ""); err == nil || !strings.Contains(err.Error(), "ca_file") {
			t.Errorf("ca_file %s: %v; want an error naming ca_file", bad, err)
		}
	}
}
