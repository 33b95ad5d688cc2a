package display

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/text/encoding/japanese"
)

// sampleTable loads the table shipped for the demo.
func sampleTable(t *testing.T) *BankTable {
	t.Helper()
	f, err := os.Open("banks-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := LoadBankTable(f)
	if err != nil {
		t.Fatalf("the shipped sample does not load: %v", err)
	}
	return table
}

func TestLoadBankTableSample(t *testing.T) {
	table := sampleTable(t)
	for code, want := range map[string]string{
		"0001": "みずほ銀行", "0005": "三菱ＵＦＪ銀行", "0009": "三井住友銀行", "9900": "ゆうちょ銀行",
	} {
		if got, ok := table.BankName(code); !ok || got != want {
			t.Errorf("BankName(%s) = %q, %v; want %q", code, got, ok, want)
		}
	}
	if got, ok := table.BranchName("0001", "100"); !ok || got != "本店" {
		t.Errorf("BranchName(0001, 100) = %q, %v", got, ok)
	}
	for _, c := range [][2]string{{"0005", "100"}, {"0001", "10"}, {"000", "1100"}, {"", ""}} {
		if got, ok := table.BranchName(c[0], c[1]); ok {
			t.Errorf("BranchName(%q, %q) = %q", c[0], c[1], got)
		}
	}
	if _, ok := table.BankName("0002"); ok {
		t.Error("BankName(0002) found")
	}
	var none *BankTable
	if _, ok := none.BankName("0001"); ok {
		t.Error("a nil table names a bank")
	}
}

// TestLoadBankTableEncodings: the same table as UTF-8, UTF-8 with BOM,
// Shift_JIS and CR LF line ends reads the same.
func TestLoadBankTableEncodings(t *testing.T) {
	text := "金融機関コード,支店コード,金融機関名,支店名\r\n0001,100,みずほ銀行,本店\r\n0036,,楽天銀行\r\n"
	sjis, err := japanese.ShiftJIS.NewEncoder().String(text)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{"utf-8": text, "bom": "\ufeff" + text, "shift_jis": sjis} {
		table, err := LoadBankTable(strings.NewReader(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b, _ := table.BankName("0001")
		br, _ := table.BranchName("0001", "100")
		r, _ := table.BankName("0036")
		if b != "みずほ銀行" || br != "本店" || r != "楽天銀行" {
			t.Errorf("%s: read %q %q %q", name, b, br, r)
		}
	}
}

func TestLoadBankTableRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "no banks"},
		{"header only", "bank_code,branch_code,bank_name,branch_name\n", "no banks"},
		{"short bank code", "001,,みずほ銀行,\n", "not 4 digits"},
		{"letters in bank code", "00A1,,みずほ銀行,\n", "not 4 digits"},
		{"fullwidth bank code", "０００１,,みずほ銀行,\n", "not 4 digits"},
		{"long branch code", "0001,1000,みずほ銀行,本店\n", "not 3 digits"},
		{"branch name without code", "0001,,みずほ銀行,本店\n", "not 3 digits"},
		{"branch code without name", "0001,100,みずほ銀行,\n", "branch name: empty"},
		{"no bank name", "0001,,,\n", "bank name: empty"},
		{"spaces around a name", "0001,, みずほ銀行,\n", "spaces around"},
		{"bidi override in a name", "0001,,みずほ\u202e銀行,\n", "U+202E"},
		{"control character", "0001,,みずほ\x01銀行,\n", "U+0001"},
		{"two names for a bank", "0001,,みずほ銀行,\n0001,100,みずほ,本店\n", "named both"},
		{"branch twice", "0001,100,みずほ銀行,本店\n0001,100,みずほ銀行,本店\n", "listed twice"},
		{"two columns", "0001,みずほ銀行\n", "2 columns"},
		{"five columns", "0001,100,みずほ銀行,本店,x\n", "5 columns"},
		{"bad quoting", "0001,,\"みずほ銀行,\n", "bank table"},
		{"neither UTF-8 nor Shift_JIS", "0001,,\x82\xff,\n", "neither UTF-8 nor Shift_JIS"},
		{"header not first", "0001,,みずほ銀行,\nbank_code,branch_code,bank_name,branch_name\n", "line 2"},
	} {
		_, err := LoadBankTable(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadBankTableTooLarge(t *testing.T) {
	big := strings.Repeat("0001,,みずほ銀行,\n", maxTableBytes/len("0001,,みずほ銀行,\n")+1)
	if _, err := LoadBankTable(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("err = %v", err)
	}
	rows := strings.Repeat("0001,,A,\n", maxTableRows+1)
	if _, err := LoadBankTable(strings.NewReader(rows)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("err = %v", err)
	}
}
