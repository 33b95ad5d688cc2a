package caddyconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Values of a header identity's trusted option: who set the request
// headers its placeholders read.
const (
	TrustedForwardAuth = "forward_auth"
	TrustedProxy       = "proxy"
)

// HeaderTrust is what a request must show before a header identity's
// placeholders are believed.
type HeaderTrust struct {
	VerifiedCert bool   // a client certificate Caddy verified
	Header       string // the trusted option, when a request header is read
}

// CheckHeaderIdentity checks a header identity's service, user and trusted
// options, and says what the handler must check of each request before it
// believes them: every placeholder must be one the client cannot set.
func CheckHeaderIdentity(service, user, trusted string) (HeaderTrust, error) {
	var needs HeaderTrust
	if service == "" || user == "" {
		return needs, errors.New("otpgate: identity header needs both service and user, e.g. user {http.request.tls.client.subject}")
	}
	switch trusted {
	case "", TrustedForwardAuth, TrustedProxy:
	default:
		return needs, fmt.Errorf("otpgate: identity header trusted %q: want forward_auth or proxy", trusted)
	}
	if err := checkIdentityValue("service", service, trusted, &needs); err != nil {
		return needs, err
	}
	if err := checkIdentityValue("user", user, trusted, &needs); err != nil {
		return needs, err
	}
	if trusted != "" && needs.Header == "" {
		return needs, fmt.Errorf("otpgate: identity header trusted %s: neither service nor user reads a request header ({http.request.header.*}); remove it", trusted)
	}
	return needs, nil
}

// identityPlaceholders are the placeholders a header identity may read:
// values the client cannot choose. Each says what the handler then requires.
var identityPlaceholders = []struct {
	prefix string
	what   string
}{
	// Only from a certificate Caddy verified against a CA (the handler checks
	// the verified chains): with client_auth mode "request" or "require" a
	// client presents a self-signed certificate naming anyone.
	{"http.request.tls.client.", "a verified TLS client certificate"},
	// Set by an authentication handler (basic_auth, caddy-security) that
	// ran before the gateway; unknown, and so nobody, where none did.
	{"http.auth.user.", "an authentication handler such as basic_auth"},
	// Set by the operator's own vars or map handlers: as trustworthy as
	// what the operator set them from.
	{"http.vars.", "the vars or map handlers"},
	// Client-controlled unless Trusted says who set it.
	{"http.request.header.", "a request header, with trusted forward_auth or trusted proxy"},
}

// checkIdentityValue reads one of Service and User as Caddy's replacer
// will, and refuses it unless every placeholder is one the client cannot
// set. A user needs a placeholder, or every request would be one customer;
// a service may be fixed text (a bank with one service). It adds to needs
// what the handler must check.
func checkIdentityValue(name, value, trusted string, needs *HeaderTrust) error {
	// Caddy's own replacer finds the placeholders, so escapes and unclosed
	// braces are read here exactly as they will be on every request.
	var keys []string
	repl := caddy.NewEmptyReplacer()
	repl.Map(func(key string) (any, bool) {
		keys = append(keys, key)
		return "", true
	})
	repl.ReplaceAll(value, "")
	if len(keys) == 0 && name == "user" {
		return fmt.Errorf("otpgate: identity header user %q has no placeholder, so every request would be the same customer; use e.g. {http.request.tls.client.subject}", value)
	}
next:
	for _, key := range keys {
		for _, p := range identityPlaceholders {
			if !strings.HasPrefix(key, p.prefix) || len(key) == len(p.prefix) {
				continue
			}
			switch p.prefix {
			case "http.request.tls.client.":
				if !knownCertField(key) {
					return fmt.Errorf("otpgate: identity header %s {%s}: Caddy has no such client certificate field; see the http.request.tls.client placeholders in Caddy's documentation, e.g. {http.request.tls.client.subject}", name, key)
				}
				needs.VerifiedCert = true
			case "http.request.header.":
				if trusted == "" {
					return fmt.Errorf("otpgate: identity header %s {%s}: a client can send any request header; say who sets it: trusted forward_auth (forward_auth copy_headers deletes the client's copy) or trusted proxy (a proxy in trusted_proxies)", name, key)
				}
				needs.Header = trusted
			}
			continue next
		}
		return fmt.Errorf("otpgate: identity header %s {%s}: the client can set this placeholder, or it is not a per-request value; use a verified TLS client certificate ({http.request.tls.client.*}), {http.auth.user.*}, {http.vars.*}, or {http.request.header.*} with trusted forward_auth or trusted proxy", name, key)
	}
	return nil
}

// knownCertField says whether Caddy's replacer knows key, a client
// certificate placeholder, so that a misspelt field is refused at load
// instead of naming nobody on every request.
func knownCertField(key string) bool {
	r := &http.Request{URL: &url.URL{Path: "/"}, Header: http.Header{},
		TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}}
	repl := caddy.NewReplacer()
	caddyhttp.PrepareRequest(r, repl, nil, nil)
	_, known := repl.Get(key)
	return known
}
