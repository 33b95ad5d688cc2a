package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
)

// Smaller input defects (issue 6, item 7), through the real Caddy chain.

// inputBadCodes are submissions that are not a code of six ASCII digits.
// Each is refused as a format error and none counts as a wrong code.
var inputBadCodes = []struct {
	name string
	body string // the JSON body
}{
	{"JSON number", `{"otp":12345}`},
	{"JSON number of six digits", `{"otp":123456}`},
	{"JSON number, 8 digits", `{"otp":12345678}`},
	{"five digits", `{"otp":"12345"}`},
	{"seven digits", `{"otp":"1234567"}`},
	{"eight digits", `{"otp":"12345678"}`},
	{"fullwidth digits", `{"otp":"１２３４５６"}`},
	{"Arabic-Indic digits", `{"otp":"١٢٣٤٥٦"}`},
	{"letter", `{"otp":"12345a"}`},
	{"sign", `{"otp":"+12345"}`},
	{"null", `{"otp":null}`},
	{"boolean", `{"otp":true}`},
	{"array", `{"otp":["123456"]}`},
	{"missing", `{}`},
}

// A code must be a JSON string (or form value) of exactly the configured
// number of ASCII digits. Anything else gets 400 otp_format on the confirm
// page and the token pages, and counts no failure: the first wrong code
// afterwards still has four attempts left.
func TestOTPFormat(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPauseJSON(c, "/transfer/execute", gwTransfer)

	for _, path := range []string{"/.otpgate/confirm/" + id, "/.otpgate/token/confirm", "/.otpgate/token/renew"} {
		for _, tt := range inputBadCodes {
			res, body := inputPostJSON(c, path, tt.body)
			var out map[string]any
			json.Unmarshal([]byte(body), &out)
			if res.StatusCode != http.StatusBadRequest || out["error"] != "otp_format" {
				t.Errorf("%s %s: %d %s; want 400 otp_format", path, tt.name, res.StatusCode, body)
			}
		}
	}
	// A browser typing fullwidth digits (a Japanese IME's default) gets the
	// confirm page again, with the format message.
	res, page, _ := gwConfirmForm(c, id, "１２３４５６", nil)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(page, "6桁の数字") {
		t.Errorf("browser, fullwidth digits: %d; want 400 with the format message\n%s", res.StatusCode, page)
	}

	res, _, out := gwConfirmJSON(c, id, gwWrongCode(c))
	if res.StatusCode != http.StatusUnauthorized || out["attempts_left"] != float64(4) {
		t.Errorf("first wrong code after the malformed ones: %d %v; want 401 attempts_left 4", res.StatusCode, out)
	}
	ledger := len(e.ledger())
	res, _, _ = gwConfirmJSON(c, id, c.code())
	if res.StatusCode != http.StatusOK || len(e.ledger()) != ledger+1 {
		t.Errorf("right code: %d, ledger %d → %d; want the transfer executed", res.StatusCode, ledger, len(e.ledger()))
	}
}

// With "digits 8", six digits are a format error and eight are a code
// (here a wrong one, counted).
func TestOTPFormatEightDigits(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "digits 8"})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	email := "u001@mobile.example"
	if res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": "4829"}); res.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	link := strings.TrimPrefix(e.setupLink(email), gatewayURL)
	if res, out := c.postJSON(link, map[string]string{"service_id": "S001", "user_id": "U001", "pin": "4829"}); res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	for _, tt := range []struct {
		body, code string
		status     int
		left       any
	}{
		{`{"otp":"123456"}`, "otp_format", http.StatusBadRequest, nil},
		{`{"otp":12345678}`, "otp_format", http.StatusBadRequest, nil},
		{`{"otp":"00000000"}`, "invalid_otp", http.StatusUnauthorized, float64(4)},
	} {
		res, body := inputPostJSON(c, "/.otpgate/token/confirm", tt.body)
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		if res.StatusCode != tt.status || out["error"] != tt.code || out["attempts_left"] != tt.left {
			t.Errorf("activation with %s: %d %s; want %d %s attempts_left %v", tt.body, res.StatusCode, body, tt.status, tt.code, tt.left)
		}
	}
}

// inputPostJSON posts a raw JSON body as an API client.
func inputPostJSON(c *customer, path, body string) (*http.Response, string) {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return c.do(req)
}

// A ;jsessionid= session ID, in any letter case and any encoding, never
// appears in what the gateway logs nor in the audit trail; the released
// request still carries its URI byte for byte.
func TestSessionIDNeverLogged(t *testing.T) {
	e := newEnv(t, envOptions{})
	rec := &gwRecorder{next: e.bank}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	e.bankURL = srv.URL
	logFile := filepath.Join(e.dir, "caddy.log")
	gwLoad(t, strings.Replace(e.caddyfile(envOptions{}), "\tskip_install_trust\n",
		"\tskip_install_trust\n\tlog {\n\t\toutput file "+logFile+"\n\t\tlevel DEBUG\n\t}\n", 1))
	waitServing(t)
	c := gwEnrolled(e, "S001", "U001")

	secrets := []string{"S3CR3T0", "S3CR3T1", "S3CR3T2", "S3CR3T3", "S3CR3T4", "S3CR3T5"}
	for _, target := range []string{
		"/transfer/execute;jsessionid=" + secrets[0],
		"/transfer/execute;JSESSIONID=" + secrets[1],
		"/transfer/execute;%6Asessionid=" + secrets[2],
		"/transfer/execute%3Bjsessionid=" + secrets[3],
		"/transfer/execute%253Bjsessionid%253D" + secrets[4],
	} {
		req, _ := http.NewRequest(http.MethodPost, gatewayURL+target, strings.NewReader(gwTransfer.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		res, body := c.do(req)
		if res.StatusCode < 400 {
			t.Errorf("POST %s: %d %s; want it refused (a session in the path names nobody)", target, res.StatusCode, body)
		}
	}
	// In the query the cookie still identifies the customer: the
	// operation is paused, audited and released.
	target := "/transfer/execute?jsessionid=" + secrets[5] + "&" + gwTransfer.Encode()
	id := gwPauseJSON(c, target, nil)
	if res, body, _ := gwConfirmJSON(c, id, c.code()); res.StatusCode != http.StatusOK {
		t.Fatalf("confirming %s: %d %s", target, res.StatusCode, body)
	}
	if got := rec.last().RequestURI; got != target {
		t.Errorf("the bank received %s; want the stored URI %s byte for byte", got, target)
	}

	var redacted, lines int
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var entry struct {
			Logger string `json:"logger"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil || !strings.HasPrefix(entry.Logger, "http.handlers.otpgate") {
			continue
		}
		lines++
		line := sc.Text()
		if strings.Contains(line, "jsessionid=REDACTED") {
			redacted++
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("the gateway logged the session ID %s:\n%s", s, line)
			}
		}
	}
	if lines == 0 || redacted == 0 {
		t.Errorf("%d gateway log lines, %d with a redacted session ID; want the refusals logged, redacted", lines, redacted)
	}

	var challenged bool
	for _, r := range gwAudit(e) {
		j, _ := json.Marshal(r)
		for _, s := range secrets {
			if strings.Contains(string(j), s) {
				t.Errorf("the audit trail holds the session ID %s: %s", s, j)
			}
		}
		challenged = challenged || r.Request == "POST /transfer/execute?jsessionid=REDACTED&"+gwTransfer.Encode()
	}
	if !challenged {
		t.Errorf("no audit record names the paused operation with its session ID redacted")
	}
}

// The confirm form posts to the operation's own path only when that is a
// same-origin path; a stored path a browser would read as another host
// falls back to the gateway's own confirm URL. Such paths are refused at
// the edge; the operations are stored directly to check the page itself.
func TestConfirmActionSameOrigin(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	req := httptest.NewRequest(http.MethodGet, "/menu", nil)
	req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: gwSession(c)})
	who, err := e.gw().identify(req)
	if who == nil || err != nil {
		t.Fatalf("identifying the customer: %v %v", who, err)
	}

	for _, tt := range []struct {
		uri  string
		own  bool // the action is the operation's own path
		want string
	}{
		{uri: "/transfer/execute?amount=5", own: true, want: "/transfer/execute"},
		{uri: "//evil.example/transfer/execute"},
		{uri: "//evil.example"},
		{uri: `/\evil.example/transfer/execute`},
		{uri: "evil.example/transfer/execute"},
		{uri: "*"},
	} {
		op := &challenge.Operation{Service: who.Service, User: who.User, Session: who.Session, Rule: "transfer", Kind: "transfer", Action: string(gate.Forward),
			Method: http.MethodPost, RequestURI: tt.uri, Host: "localhost", Header: http.Header{}}
		if _, err := e.gw().shared.Challenges.Pause(context.Background(), op); err != nil {
			t.Fatal(err)
		}
		want := "/.otpgate/confirm/" + op.ID
		if tt.own {
			want = tt.want + ";otpgate=" + op.ID
		}
		r, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+op.ID, nil)
		r.Header.Set("Accept", "text/html")
		_, page := c.do(r)
		if got := regexpAction(t, page); got != want {
			t.Errorf("stored %q: form action %q, want %q", tt.uri, got, want)
		}
	}

	// Through the chain, a protocol-relative path is refused or, if it is
	// ever paused, confirmed on this origin.
	res, body := c.postForm("//transfer/execute", gwTransfer)
	switch loc := res.Header.Get("Location"); {
	case res.StatusCode == http.StatusBadRequest:
	case res.StatusCode == http.StatusSeeOther && strings.HasPrefix(loc, "/.otpgate/confirm/"):
		r, _ := http.NewRequest(http.MethodGet, gatewayURL+loc, nil)
		r.Header.Set("Accept", "text/html")
		_, page := c.do(r)
		if a := regexpAction(t, page); strings.HasPrefix(a, "//") {
			t.Errorf("POST //transfer/execute paused with form action %q", a)
		}
	default:
		t.Errorf("POST //transfer/execute: %d %s; want 400 or a pause", res.StatusCode, body)
	}
}
