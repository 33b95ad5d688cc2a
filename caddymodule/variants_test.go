package caddymodule

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The demo bank reads requests as leniently as old Java and IIS servers.
// Each variant below is a request the bank executes as a protected
// operation when it is sent to it directly (the test proves that first),
// and that through the gateway never reaches the bank without a code.

// gwVariant is one raw HTTP/1.1 request; "{sid}" in target, cookie and
// headers is replaced by the customer's bank session ID.
type gwVariant struct {
	name   string
	op     string // the ledger op the bank executes
	method string
	target string
	// cookie is the Cookie header; "-" sends none. Default: the session.
	cookie  string
	headers []string
	ctype   string
	body    string
	chunked bool
}

func (v gwVariant) raw(sid string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\n", v.method, strings.ReplaceAll(v.target, "{sid}", sid))
	switch v.cookie {
	case "-":
	case "":
		fmt.Fprintf(&b, "Cookie: JSESSIONID=%s\r\n", sid)
	default:
		fmt.Fprintf(&b, "Cookie: %s\r\n", strings.ReplaceAll(v.cookie, "{sid}", sid))
	}
	for _, h := range v.headers {
		b.WriteString(strings.ReplaceAll(h, "{sid}", sid) + "\r\n")
	}
	if v.ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", v.ctype)
	}
	switch {
	case v.chunked:
		fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(v.body), v.body)
	case v.body != "" || v.method == "POST" || v.method == "PUT" || v.method == "PATCH":
		fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(v.body), v.body)
	default:
		b.WriteString("Connection: close\r\n\r\n")
	}
	return b.String()
}

// gwRaw sends raw on a new connection to addr and reads every response the
// server sends until it closes the connection.
func gwRaw(t *testing.T, addr, raw string) ([]*http.Response, []string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("writing to %s: %v", addr, err)
	}
	method, _, _ := strings.Cut(raw, " ")
	br := bufio.NewReader(conn)
	var ress []*http.Response
	var bodies []string
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: strings.ToUpper(method)})
		if err != nil {
			if len(ress) == 0 {
				t.Fatalf("reading response from %s: %v\nrequest:\n%s", addr, err, raw)
			}
			return ress, bodies
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		ress = append(ress, res)
		bodies = append(bodies, string(b))
		if res.Close {
			return ress, bodies
		}
	}
}

func gwAddr(u string) string { return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://") }

const gwForm = "application/x-www-form-urlencoded"

// gwTransferBody is an ad-hoc transfer; the payee bank is みずほ in UTF-8.
const gwTransferBody = "to_bank=%E3%81%BF%E3%81%9A%E3%81%BB&to_account=1234567&amount=10000"

func gwMultipart(fields map[string]string, file string) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if file != "" {
		fw, _ := mw.CreateFormFile("file", file)
		fmt.Fprintf(fw, "1,0001,001,1234567,ﾔﾏﾀﾞ ﾀﾛｳ,250000\r\n2,0005,002,7654321,ｽｽﾞｷ ﾊﾅｺ,310000\r\n")
	}
	mw.Close()
	return mw.FormDataContentType(), buf.String()
}

func gwVariants() []gwVariant {
	post := func(name, target string) gwVariant {
		return gwVariant{name: name, op: "transfer", method: "POST", target: target, ctype: gwForm, body: gwTransferBody}
	}
	mpType, mpBody := gwMultipart(map[string]string{"to_bank": "みずほ", "to_account": "1234567", "amount": "10000"}, "")
	bulkType, bulkBody := gwMultipart(nil, "sogo.csv")
	payType, payBody := gwMultipart(map[string]string{"memo": "賞与"}, `C:\data\kyuyo.csv`)
	withHeader := func(v gwVariant, h ...string) gwVariant { v.headers = h; return v }
	const q = "?" + gwTransferBody
	return []gwVariant{
		post("canonical", "/transfer/execute"),
		post("upper case", "/TRANSFER/EXECUTE"),
		post("mixed case", "/Transfer/eXecute"),
		post("trailing slash", "/transfer/execute/"),
		post("trailing dot", "/transfer/execute."),
		post("trailing %20", "/transfer/execute%20"),
		post("trailing dot, space and dot segment", "/transfer/execute.%20/./"),
		post("repeated slashes", "//transfer///execute"),
		post("dot segments", "/./transfer/./execute"),
		post("dot-dot segment", "/x/../transfer/execute"),
		post("encoded dot segments", "/menu/%2e%2E/transfer/%2e/execute"),
		post("dot-dot with path parameter", "/menu/..;/transfer/execute"),
		post("encoded letters", "/%74ransfer/%45xecute"),
		post("jsessionid path parameter", "/transfer;jsessionid={sid}/execute"),
		post("other path parameters", "/transfer;foo=bar/execute;foo"),
		post("encoded slash", "/transfer%2Fexecute"),
		post("double-encoded slash", "/transfer%252Fexecute"),
		post("triple-encoded letter", "/transfer/%252565xecute"),
		post("encoded backslash", "/transfer%5Cexecute"),
		post("backslash", `/transfer\execute`),
		post("NUL truncation", "/transfer/execute%00.gif"),
		post("double-encoded NUL", "/transfer/execute%2500.jsp"),
		post("absolute-form target", "http://bank.example/transfer/execute"),
		{name: "lower-case method", op: "transfer", method: "post", target: "/transfer/execute", ctype: gwForm, body: gwTransferBody},
		{name: "GET with query", op: "transfer", method: "GET", target: "/transfer/execute" + q},
		{name: "HEAD with query", op: "transfer", method: "HEAD", target: "/transfer/execute" + q},
		{name: "PUT", op: "transfer", method: "PUT", target: "/transfer/execute", ctype: gwForm, body: gwTransferBody},
		{name: "PATCH", op: "transfer", method: "PATCH", target: "/transfer/execute", ctype: gwForm, body: gwTransferBody},
		{name: "DELETE with query", op: "transfer", method: "DELETE", target: "/transfer/execute" + q},
		{name: "PUT with query", op: "transfer", method: "PUT", target: "/transfer/execute" + q},
		withHeader(post("X-HTTP-Method-Override", "/transfer/execute"), "X-HTTP-Method-Override: PUT"),
		withHeader(post("X-HTTP-Method", "/transfer/execute"), "X-HTTP-Method: DELETE"),
		withHeader(gwVariant{name: "X-Method-Override on GET", op: "transfer", method: "GET", target: "/transfer/execute" + q}, "X-Method-Override: PATCH"),
		withHeader(gwVariant{name: "OPTIONS overridden to POST", op: "transfer", method: "OPTIONS", target: "/transfer/execute" + q}, "X-HTTP-Method-Override: POST"),
		{name: "_method in body", op: "transfer", method: "POST", target: "/transfer/execute", ctype: gwForm, body: gwTransferBody + "&_method=put"},
		{name: "_method in query", op: "transfer", method: "POST", target: "/transfer/execute?_method=Delete", ctype: gwForm, body: gwTransferBody},
		{name: "query and body together", op: "transfer", method: "POST", target: "/transfer/execute?to_bank=0001", ctype: gwForm, body: "to_account=1234567&amount=10000"},
		{name: "form with charset", op: "transfer", method: "POST", target: "/transfer/execute", ctype: gwForm + "; charset=UTF-8", body: gwTransferBody},
		{name: "Shift_JIS form", op: "transfer", method: "POST", target: "/transfer/execute", ctype: gwForm + "; charset=Shift_JIS", body: "to_bank=%82%DD%82%B8%82%D9&to_account=1234567&amount=10000"},
		{name: "EUC-JP form", op: "transfer", method: "POST", target: "/transfer/execute", ctype: gwForm + "; charset=EUC-JP", body: "to_bank=%A4%DF%A4%BA%A4%DB&to_account=1234567&amount=10000"},
		{name: "upper-case content type", op: "transfer", method: "POST", target: "/transfer/execute", ctype: "Application/X-WWW-Form-Urlencoded", body: gwTransferBody},
		{name: "JSON body", op: "transfer", method: "POST", target: "/transfer/execute", ctype: "application/json", body: `{"to_bank":"みずほ","to_account":"1234567","amount":"10000"}`},
		{name: "JSON numbers and arrays", op: "transfer", method: "PUT", target: "/transfer/execute", ctype: "application/json; charset=utf-8", body: `{"to_bank":["みずほ"],"to_account":1234567,"amount":10000}`},
		{name: "vendor JSON type", op: "transfer", method: "POST", target: "/transfer/execute", ctype: "application/vnd.bank+json", body: `{"to_bank":"みずほ","to_account":"1234567","amount":"10000"}`},
		{name: "JSON with _method", op: "transfer", method: "POST", target: "/transfer/execute", ctype: "application/json", body: `{"_method":"patch","to_bank":"みずほ","to_account":"1234567","amount":"10000"}`},
		{name: "multipart transfer", op: "transfer", method: "POST", target: "/transfer/execute", ctype: mpType, body: mpBody},
		{name: "chunked body", op: "transfer", method: "POST", target: "/transfer/execute", ctype: gwForm, body: gwTransferBody, chunked: true},
		{name: "multipart bulk", op: "bulk_transfer", method: "POST", target: "/bulk/execute", ctype: bulkType, body: bulkBody},
		{name: "multipart payroll, odd spelling", op: "bulk_transfer", method: "POST", target: "/PayRoll//Execute/", ctype: payType, body: payBody},
		{name: "multipart payroll via PUT", op: "bulk_transfer", method: "PUT", target: "/payroll/execute", ctype: payType, body: payBody},
		{name: "bill payment", op: "bill_payment", method: "POST", target: "/payment/execute;x=1", ctype: gwForm, body: "payee=%E6%9D%B1%E4%BA%AC%E9%9B%BB%E5%8A%9B&amount=3000"},
		{name: "bill payment by GET", op: "bill_payment", method: "GET", target: "/Payment/Execute?payee=x&amount=3000"},
		{name: "profile update", op: "user_change", method: "POST", target: "/profile/update.", ctype: gwForm, body: "email=evil%40example.com&phone=000"},
		{name: "profile update by PATCH JSON", op: "user_change", method: "PATCH", target: "/profile%2Fupdate", ctype: "application/json", body: `{"email":"evil@example.com","phone":"000"}`},
		{name: "session only in the URL", op: "transfer", method: "POST", target: "/transfer/execute;jsessionid={sid}", cookie: "-", ctype: gwForm, body: gwTransferBody},
		{name: "session only in the URL, encoded", op: "transfer", method: "POST", target: "/transfer/execute%3Bjsessionid%3D{sid}", cookie: "-", ctype: gwForm, body: gwTransferBody},
		{name: "session only in the URL, upper case, middle segment", op: "transfer", method: "POST", target: "/Transfer;JSESSIONID={sid}/Execute/", cookie: "-", ctype: gwForm, body: gwTransferBody},
		{name: "stale cookie, session in the URL", op: "transfer", method: "POST", target: "/transfer/execute;jsessionid={sid}", cookie: "JSESSIONID=00000000000000000000000000000000", ctype: gwForm, body: gwTransferBody},
		{name: "two JSESSIONID cookies", op: "transfer", method: "POST", target: "/transfer/execute", cookie: "JSESSIONID=00000000000000000000000000000000; JSESSIONID={sid}", ctype: gwForm, body: gwTransferBody},
		{name: "two Cookie headers", op: "transfer", method: "POST", target: "/transfer/execute", cookie: "JSESSIONID=00000000000000000000000000000000", headers: []string{"Cookie: JSESSIONID={sid}"}, ctype: gwForm, body: gwTransferBody},
		{name: "everything at once", op: "transfer", method: "POST", target: "//TRANSFER;jsessionid={sid}/%2565xecute%5C.", cookie: "-", ctype: gwForm, body: gwTransferBody + "&_method=patch"},
	}
}

// gwAcceptable are the gateway's answers to a protected operation sent
// without a code: paused (303 to the confirm page), refused, or told to log
// in — never the bank's own answer.
var gwAcceptable = map[int]bool{
	http.StatusSeeOther: true, http.StatusBadRequest: true, http.StatusUnauthorized: true, http.StatusForbidden: true,
	http.StatusMethodNotAllowed: true, http.StatusRequestEntityTooLarge: true,
}

var gwReceipt = regexp.MustCompile(`R\d{6}`)

func TestGwVariantsNeverReachBankWithoutCode(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	sid := gwSession(c)
	variants := gwVariants()
	if len(variants) < 30 {
		t.Fatalf("only %d variants", len(variants))
	}

	// Each variant is real: sent straight to the bank, it executes.
	for _, v := range variants {
		before := len(e.ledger())
		ress, bodies := gwRaw(t, gwAddr(e.bankURL), v.raw(sid))
		l := e.ledger()
		if ress[0].StatusCode != http.StatusOK || len(l) != before+1 || l[len(l)-1].Op != v.op || l[len(l)-1].User != "U001" {
			t.Errorf("%s: sent to the bank directly: status %d, ledger +%d; want 200 and one %s entry (the variant is not real)\n%s",
				v.name, ress[0].StatusCode, len(l)-before, v.op, bodies[0])
		}
	}
	executed := len(e.ledger())

	// Through the gateway, none reaches the bank without a code.
	for _, v := range variants {
		ress, bodies := gwRaw(t, fmt.Sprintf("localhost:%d", gatewayPort), v.raw(sid))
		res := ress[0]
		loc := res.Header.Get("Location")
		switch {
		case !gwAcceptable[res.StatusCode]:
			t.Errorf("%s: through the gateway: status %d; want 303/400/401/403/405/413\n%s", v.name, res.StatusCode, bodies[0])
		case res.StatusCode == http.StatusSeeOther && !strings.HasPrefix(loc, "/.otpgate/"):
			t.Errorf("%s: through the gateway: 303 to %q, not a gateway page (the bank answered)", v.name, loc)
		case strings.Contains(bodies[0], gwCompletion) || gwReceipt.MatchString(bodies[0]):
			t.Errorf("%s: through the gateway: the bank's completion page", v.name)
		}
		if n := len(e.ledger()); n != executed {
			t.Fatalf("%s: through the gateway: the bank executed it without a code (ledger %d → %d): %+v", v.name, executed, n, e.ledger()[executed:])
		}
		// A request that names its session other than by exactly one cookie
		// has no identity at the gateway: 403 (or 400 for an ambiguous
		// path), never paused for a customer.
		ambiguous := strings.Count(v.raw(sid), "JSESSIONID=") != 1 || strings.Contains(strings.ToLower(v.target), "jsessionid")
		if ambiguous && res.StatusCode != http.StatusForbidden && res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: through the gateway: status %d; want 403 (no single session cookie) or 400", v.name, res.StatusCode)
		}
	}
}

// A session named in the URL is not the gateway's to trust: a customer whose
// own cookie the bank no longer accepts must not have an operation released
// that carries another customer's session in its path, however encoded.
func TestGwSessionInPathNotReleasedForAnother(t *testing.T) {
	e := newEnv(t, envOptions{})
	attacker := gwEnrolled(e, "S001", "U002")
	victim := e.customer("S001", "U001")
	victim.login()
	vsid := gwSession(victim)

	// The attacker's bank session ends (idle at the bank, or logged out there
	// directly) while the gateway still knows the cookie.
	asid := gwSession(attacker)
	ress, _ := gwRaw(t, gwAddr(e.bankURL), "POST /logout HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID="+asid+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if ress[0].StatusCode != http.StatusSeeOther {
		t.Fatalf("bank logout: status %d", ress[0].StatusCode)
	}

	for _, target := range []string{
		"/transfer/execute;jsessionid=" + vsid,
		"/transfer/execute%3Bjsessionid%3D" + vsid,
		"/transfer/execute%253Bjsessionid%253D" + vsid,
		"/transfer%25253BJSESSIONID%25253D" + vsid + "/execute",
	} {
		before := len(e.ledger())
		raw := "POST " + target + " HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + asid + "\r\nAccept: application/json\r\n" +
			"Content-Type: " + gwForm + "\r\nContent-Length: " + fmt.Sprint(len(gwTransferBody)) + "\r\nConnection: close\r\n\r\n" + gwTransferBody
		ress, bodies := gwRaw(t, fmt.Sprintf("localhost:%d", gatewayPort), raw)
		res := ress[0]
		if res.StatusCode == http.StatusUnauthorized {
			// Paused: the attacker confirms with their own code.
			id := regexp.MustCompile(`"challenge":"([^"]+)"`).FindStringSubmatch(bodies[0])
			if id == nil {
				t.Fatalf("%s: paused without a challenge: %s", target, bodies[0])
			}
			cres, body, _ := gwConfirmJSON(attacker, id[1], attacker.code())
			if strings.Contains(body, gwCompletion) {
				t.Errorf("%s: released with the attacker's code; the bank executed it for %+v", target, e.ledger()[before:])
			}
			t.Logf("%s: paused, confirmation answered %d", target, cres.StatusCode)
		} else if !(res.StatusCode == http.StatusForbidden && strings.Contains(bodies[0], "login_required")) &&
			!(res.StatusCode == http.StatusBadRequest && strings.Contains(bodies[0], "ambiguous_path")) {
			t.Errorf("%s: status %d %s; want 403 login_required or 400 ambiguous_path", target, res.StatusCode, bodies[0])
		}
		if l := e.ledger(); len(l) != before {
			t.Errorf("%s: the bank executed %+v", target, l[before:])
		}
	}
}

// A request framed both by Content-Length and Transfer-Encoding (request
// smuggling) never reaches a protected operation; neither does a request
// hidden behind it.
func TestGwAmbiguousFraming(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	sid := gwSession(c)
	smuggled := "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + sid + "\r\nContent-Type: " + gwForm +
		"\r\nContent-Length: " + fmt.Sprint(len(gwTransferBody)) + "\r\nConnection: close\r\n\r\n" + gwTransferBody
	tests := []struct{ name, raw string }{
		{"CL.TE", "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + sid + "\r\nContent-Type: " + gwForm +
			"\r\nContent-Length: " + fmt.Sprint(len(gwTransferBody)) + "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(gwTransferBody), gwTransferBody)},
		{"TE.CL with a request behind", "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + sid + "\r\nContent-Type: " + gwForm +
			"\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(gwTransferBody), gwTransferBody) + smuggled},
		{"TE obfuscated", "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + sid + "\r\nContent-Type: " + gwForm +
			"\r\nContent-Length: " + fmt.Sprint(len(gwTransferBody)) + "\r\nTransfer-Encoding: xchunked\r\n\r\n" + gwTransferBody},
		{"two Content-Lengths", "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID=" + sid + "\r\nContent-Type: " + gwForm +
			"\r\nContent-Length: " + fmt.Sprint(len(gwTransferBody)) + "\r\nContent-Length: 5\r\n\r\n" + gwTransferBody},
	}
	for _, tt := range tests {
		ress, bodies := gwRaw(t, fmt.Sprintf("localhost:%d", gatewayPort), tt.raw)
		for i, res := range ress {
			if res.StatusCode == http.StatusOK || strings.Contains(bodies[i], gwCompletion) {
				t.Errorf("%s: response %d: status %d; the bank answered", tt.name, i, res.StatusCode)
			}
			t.Logf("%s: response %d: %d %s", tt.name, i, res.StatusCode, res.Header.Get("Location"))
		}
		if l := e.ledger(); len(l) != 0 {
			t.Fatalf("%s: the bank executed %+v", tt.name, l)
		}
	}
}
