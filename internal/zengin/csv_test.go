package zengin

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

// A payroll CSV as accounting software exports it: a title row, then
// 銀行コード,銀行名,支店コード,支店名,預金種目,口座番号,受取人名,金額.
const payrollCSV = "銀行コード,銀行名,支店コード,支店名,預金種目,口座番号,受取人名,金額\r\n" +
	"0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ ﾀﾛｳ,285000\r\n" +
	"0009,三井住友銀行,258,青山支店,1,7000002,\"ｻﾄｳ, ﾐｻｷ\",312500\r\n" +
	"0036,楽天銀行,251,第一営業支店,2,123,山田　花子,246800\r\n"

var payrollMap = ColumnMap{
	Type: "11", HeaderRows: 1,
	BankCode: 1, BankName: 2, BranchCode: 3, BranchName: 4, AccountType: 5, AccountNumber: 6, Recipient: 7, Amount: 8,
}

func TestParseCSV(t *testing.T) {
	sjis, err := japanese.ShiftJIS.NewEncoder().String(payrollCSV)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data string
		cs   Charset
	}{
		{"utf-8", payrollCSV, UTF8},
		{"utf-8 with BOM", "\ufeff" + payrollCSV, UTF8},
		{"utf-8, LF", strings.ReplaceAll(payrollCSV, "\r\n", "\n"), UTF8},
		{"shift_jis", sjis, ShiftJIS},
	} {
		s := ParseCSV([]byte(tc.data), payrollMap, tc.cs)
		if s.Doubtful() {
			t.Errorf("%s: %v", tc.name, s.Problems)
			continue
		}
		sum := sha256.Sum256([]byte(tc.data))
		if s.Format != FormatCSV || s.TypeJa() != "給与振込" || s.Count() != 3 || s.Total != 844300 ||
			s.SHA256 != hex.EncodeToString(sum[:]) || s.Trailer != nil || s.RequesterName != "" {
			t.Errorf("%s: %+v", tc.name, s)
		}
		want := []Transfer{
			{2, Account{"0001", "みずほ銀行", "100", "本店", "1", "7000001"}, "ﾔﾏﾀﾞ ﾀﾛｳ", 285000},
			{3, Account{"0009", "三井住友銀行", "258", "青山支店", "1", "7000002"}, "ｻﾄｳ, ﾐｻｷ", 312500},
			{4, Account{"0036", "楽天銀行", "251", "第一営業支店", "2", "123"}, "山田　花子", 246800},
		}
		if !slices.Equal(s.Transfers, want) {
			t.Errorf("%s: transfers %+v", tc.name, s.Transfers)
		}
	}

	// Only the required columns.
	m := ColumnMap{Type: "21", BankCode: 1, BranchCode: 2, AccountNumber: 3, Recipient: 4, Amount: 5}
	s := ParseCSV([]byte("0001,100,1234567,ｶ)ﾔﾏﾀﾞ,1500000\n"), m, UTF8)
	if s.Doubtful() || s.TypeEn() != "Bulk transfer" || s.Transfers[0].To.Type != "" || s.Total != 1500000 {
		t.Errorf("minimal map: %+v", s)
	}
}

func TestParseCSVProblems(t *testing.T) {
	row := func(cells string) string { return "h\n" + cells + "\n" }
	m := payrollMap
	for _, tc := range []struct {
		name string
		data string
		m    ColumnMap
		cs   Charset
		want []ProblemCode
		got  string // Got of the first problem, when it matters
	}{
		{"empty", "", m, UTF8, []ProblemCode{ProblemEmpty}, ""},
		{"only titles", "a,b\n", m, UTF8, []ProblemCode{ProblemNoTransfers}, ""},
		{"invalid UTF-8", "0001,\xff\n", m, UTF8, []ProblemCode{ProblemEncoding}, ""},
		{"invalid Shift_JIS", "0001,\x82\xff\n", m, ShiftJIS, []ProblemCode{ProblemEncoding}, ""},
		{"Shift_JIS read as UTF-8", "h\n0001,\x82\xdd\x82\xb8\x82\xd9,100,x,1,1,x,1\n", m, UTF8, []ProblemCode{ProblemEncoding}, ""},
		{"bad quote", row("0001,\"みずほ,100,本店,1,1,x,1"), m, UTF8, []ProblemCode{ProblemCSV, ProblemNoTransfers}, ""},
		{"missing column", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ"), m, UTF8, []ProblemCode{ProblemColumns, ProblemNoTransfers}, "7"},
		{"amount with commas", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,\"1,500,000\""), m, UTF8, []ProblemCode{ProblemNotDigits}, "1,500,000"},
		{"amount with yen sign", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,¥1500"), m, UTF8, []ProblemCode{ProblemNotDigits}, "¥1500"},
		{"amount with a space", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ, 1500"), m, UTF8, []ProblemCode{ProblemNotDigits}, " 1500"},
		{"fullwidth amount", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,１５００"), m, UTF8, []ProblemCode{ProblemNotDigits}, "１５００"},
		{"amount of 11 digits", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,10000000000"), m, UTF8, []ProblemCode{ProblemNotDigits}, "10000000000"},
		{"zero amount", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,0"), m, UTF8, []ProblemCode{ProblemZeroAmount}, ""},
		{"bank code without its zeros", row("1,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,1500"), m, UTF8, []ProblemCode{ProblemNotDigits}, "1"},
		{"branch code of 4", row("0001,みずほ銀行,1000,本店,1,7000001,ﾔﾏﾀﾞ,1500"), m, UTF8, []ProblemCode{ProblemNotDigits}, "1000"},
		{"account number of 8", row("0001,みずほ銀行,100,本店,1,70000011,ﾔﾏﾀﾞ,1500"), m, UTF8, []ProblemCode{ProblemNotDigits}, "70000011"},
		{"account type", row("0001,みずほ銀行,100,本店,普通,7000001,ﾔﾏﾀﾞ,1500"), m, UTF8, []ProblemCode{ProblemAccountType}, "普通"},
		{"blank recipient", row("0001,みずほ銀行,100,本店,1,7000001,　,1500"), m, UTF8, []ProblemCode{ProblemBlank}, ""},
		{"bidi override", row("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ\u202e,1500"), m, UTF8, []ProblemCode{ProblemCharset}, "U+202E"},
		{"zero-width space in a bank name", row("0001,みずほ\u200b銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,1500"), m, UTF8, []ProblemCode{ProblemCharset}, "U+200B"},
		{"line break in a quoted name", row("0001,みずほ銀行,100,本店,1,7000001,\"ﾔﾏ\nﾀﾞ\",1500"), m, UTF8, []ProblemCode{ProblemCharset}, "U+000A"},
		{"invalid map", row("0001"), ColumnMap{Type: "11"}, UTF8, []ProblemCode{ProblemColumnMap}, "column map: bank_code is required"},
	} {
		s := ParseCSV([]byte(tc.data), tc.m, tc.cs)
		if got := codes(s); !slices.Equal(got, tc.want) {
			t.Errorf("%s: problems %v, want %v", tc.name, got, tc.want)
			continue
		}
		if tc.got != "" && s.Problems[0].Got != tc.got {
			t.Errorf("%s: got %q, want %q", tc.name, s.Problems[0].Got, tc.got)
		}
		if r := s.Problems[0].Record; r != 0 && r != 2 {
			t.Errorf("%s: row %d", tc.name, r)
		}
	}

	big := "h\n" + strings.Repeat("0001,みずほ銀行,100,本店,1,7000001,ﾔﾏﾀﾞ,1500\n", 5)
	if s := parseCSV([]byte(big), m, UTF8, 4); s.Count() != 4 || !slices.Equal(codes(s), []ProblemCode{ProblemTooManyRecords}) {
		t.Errorf("row limit: %d rows, %v", s.Count(), s.Problems)
	}
}

func TestParseColumnMap(t *testing.T) {
	m, err := ParseColumnMap("type=11 header_rows=1 bank_code=1 bank_name=2 branch_code=3 branch_name=4 account_type=5 account_number=6 recipient=7 amount=8")
	if err != nil || m != payrollMap {
		t.Errorf("ParseColumnMap = %+v, %v", m, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"", "type \"\""},
		{"type=91 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=5", "type \"91\""},
		{"type=21 branch_code=2 account_number=3 recipient=4 amount=5", "bank_code is required"},
		{"type=21 bank_code=1 branch_code=2 account_number=3 recipient=4", "amount is required"},
		{"type=21 bank_code=1 branch_code=1 account_number=3 recipient=4 amount=5", "bank_code and branch_code are both column 1"},
		{"type=21 bank_code=1 bank_code=2", "bank_code given twice"},
		{"type=21 bank=1", "unknown key \"bank\""},
		{"type=21 bank_code", "not key=value"},
		{"type=21 bank_code=x", "not a number"},
		{"type=21 bank_code=-1", "not a number"},
		{"type=21 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=257", "not a column 1 to 256"},
		{"type=21 header_rows=101 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=5", "header_rows 101"},
	} {
		if _, err := ParseColumnMap(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseColumnMap(%q) = %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestParseCharset(t *testing.T) {
	for in, want := range map[string]Charset{"UTF-8": UTF8, "utf8": UTF8, "Shift_JIS": ShiftJIS, "sjis": ShiftJIS, "Windows-31J": ShiftJIS, "cp932": ShiftJIS} {
		if got, err := ParseCharset(in); got != want || err != nil {
			t.Errorf("ParseCharset(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "euc-jp", "latin1"} {
		if _, err := ParseCharset(in); err == nil {
			t.Errorf("ParseCharset(%q) accepted", in)
		}
	}
}
