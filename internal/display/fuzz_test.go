package display

import (
	"strings"
	"testing"
)

// FuzzFormatYen: an amount is formatted only when its digits read back to
// exactly the raw value; anything else comes back raw with a doubt.
func FuzzFormatYen(f *testing.F) {
	for _, s := range []string{"1500000", "0", "", "007", "1,500", "-1", "１", "999999999999999", "1000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ja, en := FormatYen(raw, Japanese), FormatYen(raw, English)
		if (ja.Doubt == "") != (en.Doubt == "") {
			t.Fatalf("languages disagree on %q: %+v %+v", raw, ja, en)
		}
		if ja.Doubt != "" {
			if ja.Text != raw || en.Text != raw {
				t.Fatalf("doubtful %q not shown raw: %+v %+v", raw, ja, en)
			}
			return
		}
		j, ok1 := strings.CutSuffix(ja.Text, "円")
		e, ok2 := strings.CutPrefix(en.Text, "¥")
		if !ok1 || !ok2 || j != e {
			t.Fatalf("%q: %q / %q", raw, ja.Text, en.Text)
		}
		if strings.ReplaceAll(j, ",", "") != raw {
			t.Fatalf("%q formatted as %q", raw, ja.Text)
		}
		for i, g := range strings.Split(j, ",") {
			if (i > 0 && len(g) != 3) || len(g) == 0 || len(g) > 3 {
				t.Fatalf("%q badly grouped: %q", raw, j)
			}
		}
	})
}

// FuzzFormatDate: a date is formatted only when it parses to a real date
// whose fields are the raw digits; otherwise it is shown raw.
func FuzzFormatDate(f *testing.F) {
	for _, s := range []string{"20261207", "2026-12-07", "2026/12/07", "1207", "0229", "20270229", "", "2026-12/07"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v := FormatDate(raw, Japanese)
		e := FormatDate(raw, English)
		if (v.Doubt == "") != (e.Doubt == "") {
			t.Fatalf("languages disagree on %q", raw)
		}
		if v.Doubt != "" {
			if v.Text != raw || e.Text != raw {
				t.Fatalf("doubtful %q not shown raw: %+v", raw, v)
			}
			return
		}
		y, m, d, ok := parseDate(raw)
		if !ok || m < 1 || m > 12 || d < 1 || d > 31 || (y != 0 && (y < minYear || y > maxYear)) {
			t.Fatalf("%q accepted as %d-%d-%d", raw, y, m, d)
		}
		digits := strings.NewReplacer("-", "", "/", "").Replace(raw)
		if len(digits) != 4 && len(digits) != 8 || !allDigits(digits) {
			t.Fatalf("%q accepted with other characters", raw)
		}
		if !strings.HasSuffix(v.Text, "日") || !strings.Contains(v.Text, "月") {
			t.Fatalf("%q formatted as %q", raw, v.Text)
		}
	})
}

// FuzzFormatAccount: never panics; a formatted account is a type name, a
// number of at most 7 digits, or both.
func FuzzFormatAccount(f *testing.F) {
	for _, s := range []string{"1 1234567", "普通　1234567", "1-1234567", "1", "1234567", "", "1  1", "普通"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v := FormatAccount(raw, English)
		if v.Doubt != "" {
			if v.Text != raw {
				t.Fatalf("doubtful %q not shown raw: %+v", raw, v)
			}
			return
		}
		name, number, _ := strings.Cut(v.Text, " ")
		if allDigits(name) {
			name, number = "", name
		}
		if name != "" && name != "Ordinary" && name != "Current" && name != "Savings" && name != "Other" {
			t.Fatalf("%q: type %q", raw, name)
		}
		if number != "" && (!allDigits(number) || len(number) > maxAccountDigits || !strings.HasSuffix(raw, number)) {
			t.Fatalf("%q: number %q", raw, number)
		}
	})
}
