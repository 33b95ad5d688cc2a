package policy

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

// Charsets whose Java decoding differs from Go's for the bytes sent are
// refused: the confirm page would show text the bank does not read.
func TestJavaCharsetAgreement(t *testing.T) {
	p, err := Compile([]Rule{{Kind: Transfer, Paths: []string{"/t"}, Show: []Field{{Name: "payee"}}}})
	if err != nil {
		t.Fatal(err)
	}
	sjis := func(s string) string {
		b, err := japanese.ShiftJIS.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	euc := func(s string) string {
		b, err := japanese.EUCJP.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name, ctype, body string
		refused           bool
	}{
		{"plain Shift_JIS", "application/x-www-form-urlencoded; charset=Shift_JIS", "payee=" + pct(sjis("みずほ銀行")), false},
		{"NEC row 13 in Shift_JIS", "application/x-www-form-urlencoded; charset=Shift_JIS", "payee=" + pct(sjis("①")), true},
		{"wave dash in Shift_JIS", "application/x-www-form-urlencoded; charset=Shift_JIS", "payee=" + pct("\x81\x60"), true},
		{"NEC row 13 in windows-31j", "application/x-www-form-urlencoded; charset=windows-31j", "payee=" + pct(sjis("①")), false},
		{"user-defined in windows-31j", "application/x-www-form-urlencoded; charset=windows-31j", "payee=" + pct("\xf0\x40"), true},
		{"plain EUC-JP", "application/x-www-form-urlencoded; charset=EUC-JP", "payee=" + pct(euc("みずほ")), false},
		{"NEC row 13 in EUC-JP", "application/x-www-form-urlencoded; charset=EUC-JP", "payee=" + pct("\xad\xa1"), true},
		{"macintosh", "application/x-www-form-urlencoded; charset=macintosh", "payee=Caf%8E", true},
		{"x-cp1252", "application/x-www-form-urlencoded; charset=x-cp1252", "payee=%80", true},
		{"gbk", "application/x-www-form-urlencoded; charset=gbk", "payee=%80", true},
		{"windows-1252 undefined byte", "application/x-www-form-urlencoded; charset=windows-1252", "payee=%81", true},
		{"JSON in windows-1252", "application/json; charset=windows-1252", `{"payee":"Caf\xe9"}`, true},
		{"JSON in Shift_JIS", "application/json; charset=shift_jis", `{"payee":"` + sjis("みずほ") + `"}`, true},
		{"JSON in UTF-8", "application/json; charset=utf-8", `{"payee":"みずほ"}`, false},
	} {
		r := &Request{Method: "POST", Path: "/t", Header: http.Header{"Content-Type": {tc.ctype}}}
		m := p.Classify(r, []byte(tc.body))
		if m == nil {
			t.Fatalf("%s: no match", tc.name)
		}
		if got := m.Verdict == Refused; got != tc.refused {
			t.Errorf("%s: verdict %q (%v), want refused=%v", tc.name, m.Verdict, m.Err, tc.refused)
		}
	}
}

// pct percent-encodes every byte of s.
func pct(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString("%")
		b.WriteString(strings.ToUpper(string("0123456789abcdef"[s[i]>>4]) + string("0123456789abcdef"[s[i]&15])))
	}
	return b.String()
}
