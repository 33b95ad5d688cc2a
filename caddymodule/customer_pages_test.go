package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

// What the customer sees on the gateway's pages, through the real handler
// chain (issue 11): values as a bank shows them, transfer files summarised
// from the held request, and no technical text.

// cpContact is the bank's contact line of these tests.
const cpContact = "0120-000-000（平日9:00～17:00）"

// cpEnv is a gateway with the contact line, the sample bank table and a
// rule showing bank and branch codes by name.
func cpEnv(t *testing.T) *env {
	t.Helper()
	table, err := filepath.Abs("../internal/display/banks-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, envOptions{Extra: fmt.Sprintf(`contact %q
		bank_table %s
		rule transfer coded {
			path /transfer/coded
			title 振込（口座指定） "Transfer to an account"
			show bank 振込先金融機関 "Payee bank" bank
			show branch 支店 Branch branch
			show amount 金額 Amount yen
		}`, cpContact, table)})
}

// cpPage loads a gateway page as a browser in a language; the body is
// unescaped HTML.
func cpPage(c *customer, path, lang string) (int, string) {
	c.e.t.Helper()
	res, body := enrolPage(c, http.MethodGet, path, lang, nil)
	return res.StatusCode, body
}

// The confirm page shows 1,500,000円 for amount=1500000, the account type by
// name, the bank's own title and bank names from the operator's table, the
// contact line, and no request line; the JSON view keeps the raw values
// and the request line.
func TestCustomerPagesConfirmValuesAsABank(t *testing.T) {
	e := cpEnv(t)
	c := e.customer("S001", "U001")
	c.login()
	// STEP 1 names the sender to let through mail filters, and the contact.
	if _, page := cpPage(c, "/.otpgate/token", "ja"); !strings.Contains(page, "otp@test-bank.example") || !strings.Contains(page, cpContact) {
		t.Errorf("STEP 1 page lacks the sender address or the contact line:\n%s", page)
	}
	c.json = true
	c.enrol()
	c.json = false
	// Every mail carries the contact line.
	if body := cpMailTo(t, e, "u001@mobile.example"); !strings.Contains(body, cpContact) {
		t.Errorf("setup mail lacks the contact line:\n%s", body)
	}
	id := gwPause(c, "/transfer/execute", url.Values{"to_bank": {"テスト銀行 本店"}, "to_account": {"1 1234567"}, "amount": {"1500000"}})

	for _, tc := range []struct {
		lang string
		want []string
	}{
		{"ja", []string{"1,500,000円", "普通 1234567", "振込・振替", "お問い合わせ：" + cpContact}},
		{"en", []string{"¥1,500,000", "Ordinary 1234567", "Transfer", "Contact: " + cpContact}},
	} {
		st, page := cpPage(c, "/.otpgate/confirm/"+id, tc.lang)
		if st != http.StatusOK {
			t.Fatalf("%s confirm page: status %d", tc.lang, st)
		}
		for _, w := range tc.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s confirm page lacks %q:\n%s", tc.lang, w, page)
			}
		}
		for _, bad := range []string{"1500000", "POST /", ">/transfer/execute"} {
			if strings.Contains(page, bad) {
				t.Errorf("%s confirm page shows %q (technical or unformatted):\n%s", tc.lang, bad, page)
			}
		}
	}

	// API clients keep the values as sent, their formats and the request line.
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
	req.Header.Set("Accept", "application/json")
	_, body := c.do(req)
	for _, w := range []string{`"value":"1500000"`, `"format":"yen"`, `"format":"account"`, `"method":"POST"`, `"path":"/transfer/execute"`} {
		if !strings.Contains(body, w) {
			t.Errorf("confirm JSON lacks %s: %s", w, body)
		}
	}

	// Codes named from the operator's table, under the bank's own title.
	id = gwPause(c, "/transfer/coded", url.Values{"bank": {"0001"}, "branch": {"100"}, "amount": {"98765"}})
	_, page := cpPage(c, "/.otpgate/confirm/"+id, "ja")
	for _, w := range []string{"振込（口座指定）", "みずほ銀行", "本店", "98,765円"} {
		if !strings.Contains(page, w) {
			t.Errorf("coded transfer confirm page lacks %q:\n%s", w, page)
		}
	}
	_, page = cpPage(c, "/.otpgate/confirm/"+id, "en")
	if !strings.Contains(page, "Transfer to an account") {
		t.Errorf("English page lacks the English title:\n%s", page)
	}
}

// cpMailTo is the body of the newest mail to addr in the mail folder.
func cpMailTo(t *testing.T, e *env, addr string) string {
	t.Helper()
	bodies := e.mailsTo(addr)
	if len(bodies) == 0 {
		t.Fatalf("no mail to %s", addr)
	}
	return bodies[0]
}

// The revocation's confirm page says in words that the token will be revoked.
func TestCustomerPagesRevokeWording(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	res, body := c.postForm("/.otpgate/token/revoke", url.Values{"csrf": {c.csrf("/.otpgate/token")}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("revoke: %d %q\n%s", res.StatusCode, loc, body)
	}
	_, page := cpPage(c, loc, "ja")
	for _, w := range []string{"トークンの失効", "このトークンを失効させます"} {
		if !strings.Contains(page, w) {
			t.Errorf("revoke confirm page lacks %q:\n%s", w, page)
		}
	}
	if strings.Contains(page, "POST /") || strings.Contains(page, "/token/revoke<") {
		t.Errorf("revoke confirm page shows the request line:\n%s", page)
	}
}

// cpUpload posts file as the multipart field "file" to path, as the demo
// bank's upload form does, and returns the challenge ID it was held under.
func cpUpload(c *customer, path, name string, file []byte) string {
	c.e.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(file)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, body := c.do(req)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		c.e.t.Fatalf("upload to %s: %d %q\n%s", path, res.StatusCode, loc, body)
	}
	return strings.TrimPrefix(loc, "/.otpgate/confirm/")
}

// A 総合振込 file held at /bulk/execute and a 給与振込 file at
// /payroll/execute: the confirm page shows the type, count, total,
// requester, date, the largest transfers and the file's SHA-256, and the
// file the bank receives on confirmation has that digest.
func TestCustomerPagesTransferFileSummary(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")

	sogo := zengintest.Sogo().MustBytes()
	kyuyo := zengintest.Kyuyo()
	kyuyo.LineBreak = "\r\n"
	kyuyoBytes := kyuyo.MustBytes()
	for _, tc := range []struct {
		name, path string
		file       []byte
		want       []string
	}{
		{"sogo", "/bulk/execute", sogo, []string{"総合振込", "6件", "3,672,400円", "ｶ)ﾃﾞﾓｼﾖｳｼﾞ", "12月7日",
			"ｶ)ﾔﾏﾀﾞｺｳｷﾞﾖｳ", "1,500,000円", "ﾐｽﾞﾎ", "普通 1111111", "ﾆﾎﾝﾃﾞﾝｷ(ｶ"}},
		{"kyuyo", "/payroll/execute", kyuyoBytes, []string{"給与振込", "4件", "1,042,300円", "ｶ)ﾃﾞﾓｼﾖｳｼﾞ", "4月25日",
			"ﾔﾏﾀﾞ ﾀﾛｳ", "312,500円", "ﾜﾀﾅﾍﾞ ﾕｳｺ"}},
	} {
		id := cpUpload(c, tc.path, tc.name+".txt", tc.file)
		st, page := cpPage(c, "/.otpgate/confirm/"+id, "ja")
		if st != http.StatusOK {
			t.Fatalf("%s: confirm page status %d", tc.name, st)
		}
		sum := sha256.Sum256(tc.file)
		digest := hex.EncodeToString(sum[:])
		for _, w := range append(tc.want, digest) {
			if !strings.Contains(page, w) {
				t.Errorf("%s confirm page lacks %q:\n%s", tc.name, w, page)
			}
		}
		if strings.Contains(page, "file-doubt") {
			t.Errorf("%s: a sound file is flagged:\n%s", tc.name, page)
		}
		res, _, _ := gwConfirmForm(c, id, c.code(), nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: confirmation status %d", tc.name, res.StatusCode)
		}
		l := e.ledger()
		if got := l[len(l)-1].Params["file_sha256"]; got != digest {
			t.Errorf("%s: the bank received a file of SHA-256 %s; the page showed %s", tc.name, got, digest)
		}
	}
}

// A file of more transfers than the confirm page lists links to a page
// listing all; the JSON views carry the summary.
func TestCustomerPagesTransferFileList(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	f := zengintest.Sogo()
	for i := range 9 {
		f.Transfers = append(f.Transfers, zengintest.Transfer{BankCode: "0001", BankName: "ﾐｽﾞﾎ", BranchCode: "100", BranchName: "ﾎﾝﾃﾝ",
			AccountType: "1", AccountNumber: fmt.Sprintf("80000%02d", i), Recipient: fmt.Sprintf("ｼｲﾚｻｷ %d", i), Amount: int64(1000 + i)})
	}
	id := cpUpload(c, "/bulk/execute", "sogo.txt", f.MustBytes())
	_, page := cpPage(c, "/.otpgate/confirm/"+id, "ja")
	if !strings.Contains(page, "金額の大きいお振込（上位10件）") || !strings.Contains(page, "すべてのお振込を表示する（15件）") {
		t.Errorf("confirm page of 15 transfers: no top-10 heading or list link:\n%s", page)
	}
	if strings.Contains(page, "ｼｲﾚｻｷ 0<") {
		t.Errorf("confirm page lists a transfer outside the largest ten:\n%s", page)
	}
	st, list := cpPage(c, "/.otpgate/confirm/"+id+"/file", "ja")
	if st != http.StatusOK {
		t.Fatalf("file page: status %d\n%s", st, list)
	}
	for i := range 9 {
		if !strings.Contains(list, fmt.Sprintf("ｼｲﾚｻｷ %d", i)) {
			t.Errorf("file page lacks transfer %d:\n%s", i, list)
		}
	}
	if !strings.Contains(list, `href="/.otpgate/confirm/`+id+`"`) {
		t.Errorf("file page has no way back to the confirmation:\n%s", list)
	}

	// In the client's language; English when it names none.
	for lang, typ := range map[string]string{"ja": "総合振込", "": "Bulk transfer"} {
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
		req.Header.Set("Accept", "application/json")
		if lang != "" {
			req.Header.Set("Accept-Language", lang)
		}
		_, body := c.do(req)
		for _, w := range []string{`"count":15`, `"type":"` + typ + `"`, `"total":3681436`} {
			if !strings.Contains(body, w) {
				t.Errorf("confirm JSON (Accept-Language %q) lacks %s: %s", lang, w, body)
			}
		}
	}
	// Another rule's operation has no file page.
	other := gwPause(c, "/transfer/execute", url.Values{"to_bank": {"x"}, "to_account": {"1 1234567"}, "amount": {"1"}})
	if st, _ := cpPage(c, "/.otpgate/confirm/"+other+"/file", "ja"); st != http.StatusNotFound {
		t.Errorf("file page of a transfer: status %d; want 404", st)
	}
}

var cpProblemItem = regexp.MustCompile(`<li>[^<]*トレーラー[^<]*</li>`)

// A file whose trailer disagrees with its records, and a file that is not
// a Zengin file at all, are held with a prominent notice; the customer can
// still cancel them.
func TestCustomerPagesDoubtfulTransferFile(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	f := zengintest.Sogo()
	wrongTotal := int64(3000000)
	f.TrailerTotal = &wrongTotal
	id := cpUpload(c, "/bulk/execute", "sogo.txt", f.MustBytes())
	_, page := cpPage(c, "/.otpgate/confirm/"+id, "ja")
	if !strings.Contains(page, `class="alert alert-error file-doubt"`) || !cpProblemItem.MatchString(page) {
		t.Errorf("a file whose trailer disagrees is not flagged:\n%s", page)
	}
	if i, j := strings.Index(page, "file-doubt"), strings.Index(page, `class="details"`); i < 0 || i > j {
		t.Errorf("the file's problems are not above the details")
	}
	_, en := cpPage(c, "/.otpgate/confirm/"+id, "en")
	if !strings.Contains(en, "Caution: this transfer file has the problems below") {
		t.Errorf("English page lacks the notice:\n%s", en)
	}

	id = cpUpload(c, "/payroll/execute", "kyuyo.csv", []byte("1,2,3\n"))
	_, page = cpPage(c, "/.otpgate/confirm/"+id, "ja")
	if !strings.Contains(page, "file-doubt") {
		t.Errorf("a file that is no Zengin file is not flagged:\n%s", page)
	}
	res, _ := c.postForm("/.otpgate/confirm/"+id+"/cancel", url.Values{"csrf": {c.csrf("/.otpgate/confirm/" + id)}})
	if res.StatusCode != http.StatusOK {
		t.Errorf("cancel: status %d", res.StatusCode)
	}
	if n := len(e.ledger()); n != 0 {
		t.Errorf("ledger has %d entries; nothing was confirmed", n)
	}
}
