package display

import (
	"strings"
	"testing"
)

func TestFormatYen(t *testing.T) {
	for _, tc := range []struct {
		raw, ja, en string
		doubt       bool
	}{
		{"1500000", "1,500,000円", "¥1,500,000", false},
		{"0", "0円", "¥0", false},
		{"7", "7円", "¥7", false},
		{"100", "100円", "¥100", false},
		{"1000", "1,000円", "¥1,000", false},
		{"38420", "38,420円", "¥38,420", false},
		{"999999999999999", "999,999,999,999,999円", "¥999,999,999,999,999", false},
		// Shown raw: every one could be read another way by someone.
		{"", "", "", true},
		{"1000000000000000", "", "", true}, // 16 digits
		{"-1500", "", "", true},
		{"+1500", "", "", true},
		{"1,500", "", "", true},
		{"1500.0", "", "", true},
		{" 1500", "", "", true},
		{"1500 ", "", "", true},
		{"１５００", "", "", true},
		{"0100", "", "", true},
		{"00", "", "", true},
		{"1e6", "", "", true},
		{"0x10", "", "", true},
		{"1500円", "", "", true},
		{"¥1500", "", "", true},
		{"٣", "", "", true},
	} {
		for _, lang := range []Lang{Japanese, English} {
			v := FormatYen(tc.raw, lang)
			want := tc.ja
			if lang == English {
				want = tc.en
			}
			if tc.doubt {
				want = tc.raw
			}
			if v.Text != want || (v.Doubt != "") != tc.doubt || v.Kind != Yen {
				t.Errorf("FormatYen(%q, %s) = %+v, want text %q, doubt %v", tc.raw, lang, v, want, tc.doubt)
			}
		}
	}
	// The doubt is in the page's language.
	if d := FormatYen("1,500", Japanese).Doubt; !strings.Contains(d, "半角数字") {
		t.Errorf("Japanese doubt = %q", d)
	}
	if d := FormatYen("1,500", English).Doubt; !strings.Contains(d, "plain digits") {
		t.Errorf("English doubt = %q", d)
	}
}

func TestFormatAccount(t *testing.T) {
	for _, tc := range []struct {
		raw, ja, en string
		doubt       bool
	}{
		{"1 1234567", "普通 1234567", "Ordinary 1234567", false},
		{"2-0012345", "当座 0012345", "Current 0012345", false},
		{"4 765", "貯蓄 765", "Savings 765", false},
		{"9 1234567", "その他 1234567", "Other 1234567", false},
		{"普通 1234567", "普通 1234567", "Ordinary 1234567", false},
		{"普通　1234567", "普通 1234567", "Ordinary 1234567", false},
		{"当座預金-1234567", "当座 1234567", "Current 1234567", false},
		{"1", "普通", "Ordinary", false},
		{"普通", "普通", "Ordinary", false},
		{"貯蓄預金", "貯蓄", "Savings", false},
		{"1234567", "1234567", "1234567", false},
		{"0012345", "0012345", "0012345", false},
		{"12", "12", "12", false},
		// Refused: what the bank might read otherwise, or not at all.
		{"", "", "", true},
		{"3", "", "", true},          // 納税準備預金: not a transfer target
		{"5 1234567", "", "", true},  // unknown code
		{"12345678", "", "", true},   // 8 digits
		{"1 12345678", "", "", true}, // 8 digits
		{"1  1234567", "", "", true}, // two separators
		{"1 1234-567", "", "", true}, // separator in the number
		{"1 ", "", "", true},         // no number
		{" 1234567", "", "", true},   // no type
		{"1\t1234567", "", "", true}, // tab is not a separator
		{"普通 １２３４５６７", "", "", true}, // fullwidth digits
		{"ふつう 1234567", "", "", true},
		{"Ordinary 1234567", "", "", true},
		{"1234567 1", "", "", true},
	} {
		for _, lang := range []Lang{Japanese, English} {
			v := FormatAccount(tc.raw, lang)
			want := tc.ja
			if lang == English {
				want = tc.en
			}
			if tc.doubt {
				want = tc.raw
			}
			if v.Text != want || (v.Doubt != "") != tc.doubt || v.Kind != Account {
				t.Errorf("FormatAccount(%q, %s) = %+v, want text %q, doubt %v", tc.raw, lang, v, want, tc.doubt)
			}
		}
	}
}

func TestAccountTypeName(t *testing.T) {
	for _, tc := range []struct {
		code, ja, en string
		ok           bool
	}{
		{"1", "普通", "Ordinary", true},
		{"2", "当座", "Current", true},
		{"4", "貯蓄", "Savings", true},
		{"9", "その他", "Other", true},
		{"3", "", "", false},
		{"", "", "", false},
		{"11", "", "", false},
		{"普通", "", "", false},
	} {
		ja, ok := AccountTypeName(tc.code, Japanese)
		en, _ := AccountTypeName(tc.code, English)
		if ja != tc.ja || en != tc.en || ok != tc.ok {
			t.Errorf("AccountTypeName(%q) = %q, %q, %v", tc.code, ja, en, ok)
		}
	}
}

func TestFormatDate(t *testing.T) {
	for _, tc := range []struct {
		raw, ja, en string
		doubt       bool
	}{
		{"20261207", "2026年12月7日", "7 Dec 2026", false},
		{"2026-12-07", "2026年12月7日", "7 Dec 2026", false},
		{"2026/01/31", "2026年1月31日", "31 Jan 2026", false},
		{"1207", "12月7日", "7 Dec", false},
		{"0229", "2月29日", "29 Feb", false},
		{"20280229", "2028年2月29日", "29 Feb 2028", false},
		{"", "", "", true},
		{"20270229", "", "", true}, // not a leap year
		{"20261301", "", "", true},
		{"20261200", "", "", true},
		{"20260431", "", "", true},
		{"0000", "", "", true},
		{"1232", "", "", true},
		{"2026-1-07", "", "", true},
		{"2026-12/07", "", "", true},
		{"2026.12.07", "", "", true},
		{"18991231", "", "", true},
		{"30000101", "", "", true},
		{"２０２６１２０７", "", "", true},
		{"2026-+1-07", "", "", true},
		{"12-7", "", "", true},
		{"202612070", "", "", true},
		{"令和8年12月7日", "", "", true},
	} {
		for _, lang := range []Lang{Japanese, English} {
			v := FormatDate(tc.raw, lang)
			want := tc.ja
			if lang == English {
				want = tc.en
			}
			if tc.doubt {
				want = tc.raw
			}
			if v.Text != want || (v.Doubt != "") != tc.doubt || v.Kind != Date {
				t.Errorf("FormatDate(%q, %s) = %+v, want text %q, doubt %v", tc.raw, lang, v, want, tc.doubt)
			}
		}
	}
}

func TestFormatCode(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		doubt bool
	}{
		{"AB-1234", false},
		{"0001 002", false},
		{"", true},
		{" AB", true},
		{"AB\t", true},
		{"AB　", true}, // an ideographic space is invisible too
	} {
		v := FormatCode(tc.raw, English)
		if v.Text != tc.raw || v.Kind != Code || (v.Doubt != "") != tc.doubt {
			t.Errorf("FormatCode(%q) = %+v, want doubt %v", tc.raw, v, tc.doubt)
		}
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"", "yen", "account", "date", "code", "bank", "branch"} {
		if k, err := ParseKind(s); err != nil || string(k) != s {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"Yen", "map", "amount", " yen"} {
		if _, err := ParseKind(s); err == nil {
			t.Errorf("ParseKind(%q) accepted", s)
		}
	}
}

// TestShow checks that Show dispatches each kind, and that a Lang converted
// from a page language string works as the constants do.
func TestShow(t *testing.T) {
	table := sampleTable(t)
	for _, tc := range []struct {
		kind        Kind
		raw         string
		o           Options
		text, doubt string
	}{
		{Plain, " as it is ", Options{}, " as it is ", ""},
		{Yen, "1500000", Options{Lang: "ja"}, "1,500,000円", ""},
		{Yen, "1500000", Options{Lang: "en"}, "¥1,500,000", ""},
		{Yen, "1500000", Options{Lang: "fr"}, "1,500,000円", ""},
		{Account, "1 1234567", Options{Lang: English}, "Ordinary 1234567", ""},
		{Date, "20261207", Options{}, "2026年12月7日", ""},
		{Code, "X1", Options{}, "X1", ""},
		{Bank, "0001", Options{Table: table}, "みずほ銀行（0001）", ""},
		{Bank, "0001", Options{Table: table, Lang: English}, "みずほ銀行 (0001)", ""},
		{Bank, "0002", Options{Table: table, Lang: English}, "0002", "the bank code is not in the bank table"},
		{Bank, "0001", Options{}, "0001", "金融機関名の一覧が設定されていません"},
		{Branch, "100", Options{Table: table, BankCode: "0001"}, "本店（100）", ""},
		{Branch, "258", Options{Table: table, BankCode: "0009", Lang: English}, "青山支店 (258)", ""},
		{Branch, "100", Options{Table: table, BankCode: "0009"}, "100", "支店コードが一覧にありません"},
		{Branch, "100", Options{Table: table}, "100", "支店コードが一覧にありません"},
		{Branch, "100", Options{BankCode: "0001", Lang: English}, "100", "no bank table is configured"},
	} {
		v := Show(tc.kind, tc.raw, tc.o)
		if v.Text != tc.text || v.Doubt != tc.doubt || v.Kind != tc.kind {
			t.Errorf("Show(%q, %q, %+v) = %+v, want %q doubt %q", tc.kind, tc.raw, tc.o, v, tc.text, tc.doubt)
		}
	}
}
