package caddymodule

import (
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// uriFilter is the log filter the README recommends for every log that
// writes request URIs (Caddy's access log, and its reverse_proxy at
// DEBUG): a Java bank's ;jsessionid= and a mailed setup link travel in
// the URI, which Caddy logs as received.
const uriFilter = `format filter {
			request>uri multi_regexp {
				regexp (?i);jsessionid=[^/?#]* ;jsessionid=REDACTED
				regexp /\.otpgate/setup/[^/?#]+ /.otpgate/setup/REDACTED
			}
			wrap json
		}`

// secrecyCaddyfile is the test gateway's configuration with every log at
// DEBUG written to logFile as JSON, the site's access log too, both
// filtered as the README recommends.
func secrecyCaddyfile(e *env, logFile string) string {
	cfg := e.caddyfile(envOptions{})
	cfg = strings.Replace(cfg, "\tskip_install_trust\n", "\tskip_install_trust\n\tdebug\n\tlog {\n\t\toutput file "+logFile+"\n\t\t"+uriFilter+"\n\t\tlevel DEBUG\n\t}\n", 1)
	access := "\tlog {\n\t\toutput file " + logFile + "\n\t\t" + uriFilter + "\n\t}\n\totpgate {"
	return strings.Replace(cfg, "\totpgate {", access, 1)
}

// A whole journey — login, enrolment (STEP 1-3), a held transfer, a wrong
// code, the right code, a request naming its session in the path, the
// customer's revocation, the bank's reset — with every log at DEBUG: no
// log line and no audit record holds a code, the PIN, the secret, the
// setup link, the sealing key, a session cookie value or a jsessionid.
func TestNoSecretInLogsOrAudit(t *testing.T) {
	e := newEnv(t, envOptions{})
	logFile := filepath.Join(t.TempDir(), "otpgate.log")
	gwLoad(t, secrecyCaddyfile(e, logFile))
	waitServing(t)

	const pin = "73051946"
	secrets := map[string]string{"PIN": pin, "sealing key": testKey}
	c := e.customer("S001", "U001")
	c.login()
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": "u001@mobile.example", "pin": pin})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	link := e.setupLink("u001@mobile.example")
	secrets["setup link"] = link[strings.LastIndex(link, "/")+1:]
	res, out = c.postJSON(strings.TrimPrefix(link, gatewayURL), map[string]string{"service_id": "S001", "user_id": "U001", "pin": pin})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	secret, _ := out["secret"].(string)
	c.secret, _ = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	secrets["secret (base32)"], secrets["secret (hex)"] = secret, hex.EncodeToString(c.secret)
	var codes []string
	code := func() string { s := c.code(); codes = append(codes, s); return s }
	if res, out := c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": code()}); res.StatusCode != http.StatusOK {
		t.Fatalf("activate: %d %v", res.StatusCode, out)
	}

	id := gwPause(c, "/transfer/execute", gwTransfer)
	wrong := c.wrongCode()
	codes = append(codes, wrong)
	gwConfirmForm(c, id, wrong, nil)
	if res, body, _ := gwConfirmForm(c, id, code(), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("right code: %d\n%s", res.StatusCode, body)
	}
	// The session named in the path, as a Java bank's URL rewriting does.
	const jsession = "7F3A9C2E5B1D4F60A8E2C4B6D8F0A1C3"
	c.get("/menu;jsessionid=" + jsession)
	secrets["jsessionid"] = jsession

	// The customer revokes the token; the bank resets it.
	res, _ = c.postForm("/.otpgate/token/revoke", url.Values{"csrf": {c.csrf("/.otpgate/token")}})
	if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("revoke: %d %q", res.StatusCode, loc)
	}
	gwConfirmForm(c, strings.TrimPrefix(res.Header.Get("Location"), "/.otpgate/confirm/"), code(), nil)
	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/reset", map[string]string{"service": "S001", "user": "U001", "by": "yamada"}); status != http.StatusOK {
		t.Fatalf("reset: %d %s", status, b)
	}
	for i, ck := range c.c.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(gatewayURL, "http://")}) {
		if ck.Name == "JSESSIONID" {
			secrets["session cookie "+string(rune('a'+i))] = ck.Value
		}
	}

	// The whole audit trail, and everything logged.
	var trail []string
	for _, r := range e.auditTrail() {
		b, _ := json.Marshal(r)
		trail = append(trail, string(b))
	}
	unloadGateway(t) // flushes and closes the log file
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(logs)), "\n")
	debug := 0
	for _, l := range lines {
		if strings.Contains(l, `"level":"debug"`) {
			debug++
		}
	}
	if len(lines) < 50 || debug == 0 || !strings.Contains(string(logs), `"logger":"http.handlers.otpgate"`) ||
		!strings.Contains(string(logs), `"logger":"http.log.access`) || !strings.Contains(string(logs), "jsessionid=REDACTED") || !strings.Contains(string(logs), "/setup/REDACTED") {
		t.Fatalf("%d log lines, %d at debug: want the gateway's debug and access logs", len(lines), debug)
	}
	if len(trail) < 10 {
		t.Fatalf("%d audit records", len(trail))
	}

	check := func(where string, texts []string) {
		t.Helper()
		for _, text := range texts {
			for name, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("%s holds the %s: %s", where, name, text)
				}
			}
			// Codes are digits: only a code standing alone is one, not
			// the same digits inside a timestamp.
			for _, code := range codes {
				if regexp.MustCompile(`(^|[^0-9])` + code + `([^0-9]|$)`).MatchString(text) {
					t.Errorf("%s holds the code %s: %s", where, code, text)
				}
			}
		}
	}
	if len(secrets) < 7 || len(codes) < 4 {
		t.Fatalf("the journey collected %d secrets and %d codes", len(secrets), len(codes))
	}
	check("log line", lines)
	check("audit record", trail)
}
