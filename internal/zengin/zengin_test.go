package zengin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

func build(t testing.TB, f zengintest.File) []byte {
	t.Helper()
	b, err := f.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func codes(s *Summary) []ProblemCode {
	var c []ProblemCode
	for _, p := range s.Problems {
		c = append(c, p.Code)
	}
	return c
}

func shoyo() zengintest.File {
	f := zengintest.Kyuyo()
	f.Header.Type = zengintest.TypeShoyo
	f.Header.Date = "1210"
	return f
}

// TestParseValid reads well-formed 総合, 給与 and 賞与 files in every
// accepted layout and checks every summarised value.
func TestParseValid(t *testing.T) {
	files := []struct {
		name           string
		file           zengintest.File
		typeJa, typeEn string
		date           string
		count          int
		total          int64
	}{
		{"sogo", zengintest.Sogo(), "総合振込", "Bulk transfer", "1207", 6, 3672400},
		{"kyuyo", zengintest.Kyuyo(), "給与振込", "Salary transfer", "0425", 4, 1042300},
		{"shoyo", shoyo(), "賞与振込", "Bonus transfer", "1210", 4, 1042300},
	}
	layouts := []struct {
		name, lineBreak, tail string
	}{
		{"back to back", "", ""},
		{"back to back, final CR LF", "", "\r\n"},
		{"back to back, final LF", "", "\n"},
		{"back to back, EOF mark", "", "\x1a"},
		{"back to back, CR LF and EOF mark", "", "\r\n\x1a"},
		{"CR LF", "\r\n", ""},
		{"CR LF, EOF mark", "\r\n", "\x1a"},
		{"LF", "\n", ""},
	}
	for _, fc := range files {
		for _, lc := range layouts {
			f := fc.file
			f.LineBreak = lc.lineBreak
			data := append(build(t, f), lc.tail...)
			s := Parse(data)
			name := fc.name + "/" + lc.name
			if s.Doubtful() || s.Omitted != 0 {
				t.Errorf("%s: problems %v", name, s.Problems)
				continue
			}
			sum := sha256.Sum256(data)
			switch {
			case s.Format != FormatZengin:
				t.Errorf("%s: format %q", name, s.Format)
			case s.TypeJa() != fc.typeJa || s.TypeEn() != fc.typeEn:
				t.Errorf("%s: type %q %q", name, s.TypeJa(), s.TypeEn())
			case s.RequesterName != "ｶ)ﾃﾞﾓｼﾖｳｼﾞ" || s.RequesterCode != "1234567890" || s.Date != fc.date:
				t.Errorf("%s: header %q %q %q", name, s.RequesterName, s.RequesterCode, s.Date)
			case s.From != (Account{"9999", "ﾃﾞﾓｼﾝｸﾐ", "001", "ﾎﾝﾃﾝ", "1", "1234567"}):
				t.Errorf("%s: from %+v", name, s.From)
			case s.Count() != fc.count || s.Total != fc.total:
				t.Errorf("%s: %d transfers, %d yen", name, s.Count(), s.Total)
			case s.Trailer == nil || *s.Trailer != (Totals{int64(fc.count), fc.total}):
				t.Errorf("%s: trailer %+v", name, s.Trailer)
			case s.SHA256 != hex.EncodeToString(sum[:]):
				t.Errorf("%s: sha256 %s", name, s.SHA256)
			}
			for i, tr := range s.Transfers {
				want := f.Transfers[i]
				got := Account{want.BankCode, want.BankName, want.BranchCode, want.BranchName, want.AccountType, want.AccountNumber}
				if tr.Record != i+2 || tr.To != got || tr.Recipient != want.Recipient || tr.Amount != want.Amount {
					t.Errorf("%s: transfer %d = %+v, want %+v", name, i, tr, want)
				}
			}
		}
	}
}

// TestParseHalfWidth: names come out as the half-width katakana and JIS X
// 0201 Roman characters the bytes are, including ¥ and ‾.
func TestParseHalfWidth(t *testing.T) {
	f := zengintest.Sogo()
	f.Transfers[0].Recipient = "ｱｲｳ ｶﾞﾊﾟ ｰ｡｢｣､･ﾟ ABC-(.)/¥‾"
	s := Parse(build(t, f))
	if s.Doubtful() {
		t.Fatal(s.Problems)
	}
	if got := s.Transfers[0].Recipient; got != "ｱｲｳ ｶﾞﾊﾟ ｰ｡｢｣､･ﾟ ABC-(.)/¥‾" {
		t.Errorf("recipient %q", got)
	}
	for _, r := range s.Transfers[0].Recipient {
		if r >= 0x80 && r != '¥' && r != '‾' && (r < 0xFF61 || r > 0xFF9F) {
			t.Errorf("rune %U outside half-width katakana", r)
		}
	}
}

func TestTop(t *testing.T) {
	f := zengintest.Sogo()
	f.Transfers = append(f.Transfers, f.Transfers[1]) // a tie with record 3
	s := Parse(build(t, f))
	var got []int64
	var recs []int
	for _, tr := range s.Top(4) {
		got = append(got, tr.Amount)
		recs = append(recs, tr.Record)
	}
	if !slices.Equal(got, []int64{1500000, 1250000, 500000, 324000}) || !slices.Equal(recs, []int{2, 5, 7, 3}) {
		t.Errorf("Top(4) = %v records %v", got, recs)
	}
	if n := len(s.Top(100)); n != 7 {
		t.Errorf("Top(100) has %d", n)
	}
	if s.Top(0) != nil || s.Top(-1) != nil {
		t.Error("Top(<=0) not empty")
	}
	if s.Transfers[0].Amount != 1500000 {
		t.Error("Top reordered Transfers")
	}
}

// record returns the offset of record i (0-based) in a file built with
// line break lb.
func record(i int, lb string) int { return i * (RecordLen + len(lb)) }

// TestParseProblems: every way a file can be wrong is reported, with the
// record and what was found.
func TestParseProblems(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	sogo := func(lb string) []byte {
		f := zengintest.Sogo()
		f.LineBreak = lb
		return build(t, f)
	}
	set := func(data []byte, off int, s string) []byte {
		data = bytes.Clone(data)
		copy(data[off:], s)
		return data
	}
	sixRecords := func(lb string) (header, data1, trailer, end []byte) {
		b := sogo(lb)
		n := RecordLen + len(lb)
		return b[:n], b[n : 2*n], b[7*n : 8*n], b[8*n:]
	}
	h, d, tr, end := sixRecords("\r\n")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	noData := zengintest.Sogo()
	noData.Transfers = nil

	for _, tc := range []struct {
		name string
		data []byte
		want []ProblemCode
		// record of the first problem, and its Got, when they matter
		record int
		got    string
	}{
		{"trailer count", build(t, zengintest.File{Header: zengintest.Sogo().Header, Transfers: zengintest.Sogo().Transfers, TrailerCount: i64(5)}),
			[]ProblemCode{ProblemTrailerCount}, 0, "6"},
		{"trailer total", build(t, zengintest.File{Header: zengintest.Kyuyo().Header, Transfers: zengintest.Kyuyo().Transfers, TrailerTotal: i64(1042299)}),
			[]ProblemCode{ProblemTrailerTotal}, 0, "1042300"},
		{"empty", nil, []ProblemCode{ProblemEmpty}, 0, ""},
		{"only an EOF mark", []byte{0x1a}, []ProblemCode{ProblemEmpty}, 0, ""},
		{"truncated in a record", sogo("")[:5*RecordLen+60], []ProblemCode{ProblemRecordLength}, 6, "60"},
		{"truncated, CR LF", sogo("\r\n")[:record(3, "\r\n")+119], []ProblemCode{ProblemRecordLength}, 4, "119"},
		{"no end record", sogo("")[:8*RecordLen], []ProblemCode{ProblemNoEnd}, 0, ""},
		{"no trailer", cat(h, d, end), []ProblemCode{ProblemNoTrailer}, 0, ""},
		{"no header", cat(d, tr, end), []ProblemCode{ProblemNoHeader, ProblemTrailerCount, ProblemTrailerTotal}, 1, ""},
		{"only a header", h, []ProblemCode{ProblemNoTrailer, ProblemNoEnd, ProblemNoTransfers}, 0, ""},
		{"no data", build(t, noData), []ProblemCode{ProblemNoTransfers}, 0, ""},
		{"amount with a letter", set(sogo(""), record(1, "")+80, "000150000O"),
			[]ProblemCode{ProblemNotDigits, ProblemTrailerTotal}, 2, "000150000O"},
		{"amount padded with spaces", set(sogo(""), record(1, "")+80, "   1500000"),
			[]ProblemCode{ProblemNotDigits, ProblemTrailerTotal}, 2, "   1500000"},
		{"zero amount", set(sogo(""), record(1, "")+80, "0000000000"),
			[]ProblemCode{ProblemZeroAmount, ProblemTrailerTotal}, 2, ""},
		{"bank code", set(sogo(""), record(2, "")+1, "00O5"), []ProblemCode{ProblemNotDigits}, 3, "00O5"},
		{"branch code", set(sogo(""), record(2, "")+20, " 01"), []ProblemCode{ProblemNotDigits}, 3, " 01"},
		{"account number", set(sogo(""), record(2, "")+43, "022222 "), []ProblemCode{ProblemNotDigits}, 3, "022222 "},
		{"account type", set(sogo(""), record(3, "")+42, "3"), []ProblemCode{ProblemAccountType}, 4, "3"},
		{"blank recipient", set(sogo(""), record(4, "")+50, strings.Repeat(" ", 30)), []ProblemCode{ProblemBlank}, 5, ""},
		{"Shift_JIS kanji in a name", set(sogo(""), record(1, "")+50, "\x8e\x52\x93\x63"), // 山田
			[]ProblemCode{ProblemCharset}, 2, "0x8e"},
		{"tab in a name", set(sogo(""), record(1, "")+55, "\t"), []ProblemCode{ProblemCharset}, 2, "0x9"},
		{"DEL in the dummy area", set(sogo(""), record(1, "")+119, "\x7f"), []ProblemCode{ProblemCharset}, 2, "0x7f"},
		{"record type", set(sogo(""), record(2, ""), "3"), []ProblemCode{ProblemRecordType, ProblemTrailerCount, ProblemTrailerTotal}, 3, "3"},
		{"type code", set(sogo(""), 1, "91"), []ProblemCode{ProblemType}, 1, "91"},
		{"code section EBCDIC", set(sogo(""), 3, "1"), []ProblemCode{ProblemCodeSection}, 1, "1"},
		{"date", set(sogo(""), 54, "1332"), []ProblemCode{ProblemDate}, 1, "1332"},
		{"date 0230", set(sogo(""), 54, "0230"), []ProblemCode{ProblemDate}, 1, "0230"},
		{"two headers", cat(h, h, d, tr, end), []ProblemCode{ProblemSecondHeader, ProblemTrailerCount, ProblemTrailerTotal}, 2, ""},
		{"two batches", cat(h, d, tr, h, d, tr, end),
			[]ProblemCode{ProblemSecondHeader, ProblemDataAfterTrailer, ProblemSecondTrailer, ProblemTrailerCount, ProblemTrailerTotal}, 4, ""},
		{"data after trailer", cat(sogo("\r\n")[:record(7, "\r\n")], tr, d, end),
			[]ProblemCode{ProblemDataAfterTrailer, ProblemTrailerCount, ProblemTrailerTotal}, 9, ""},
		{"record after end", cat(sogo("\r\n"), d), []ProblemCode{ProblemAfterEnd}, 10, ""},
		{"bytes after end", cat(sogo(""), []byte("xyz")), []ProblemCode{ProblemAfterEnd}, 10, ""},
		{"blank line after end", cat(sogo("\r\n"), []byte("\r\n")), []ProblemCode{ProblemAfterEnd}, 10, ""},
		{"two EOF marks", cat(sogo(""), []byte{0x1a, 0x1a}), []ProblemCode{ProblemAfterEnd}, 10, ""},
		{"a record without its CR LF", cat(h, d[:RecordLen], d, tr, end), []ProblemCode{ProblemSeparator}, 2, ""},
		{"LF then CR LF", cat(h[:RecordLen], []byte("\n"), d, tr, end), []ProblemCode{ProblemSeparator}, 2, ""},
		{"CR alone", bytes.ReplaceAll(sogo("\r\n"), []byte("\r\n"), []byte("\r")),
			[]ProblemCode{ProblemCharset, ProblemRecordType}, 2, ""},
	} {
		s := Parse(tc.data)
		got := codes(s)
		if !slices.Equal(got[:min(len(got), len(tc.want))], tc.want) || len(got) < len(tc.want) {
			t.Errorf("%s: problems %v, want %v first", tc.name, got, tc.want)
			continue
		}
		if tc.name != "CR alone" && len(got) != len(tc.want) {
			t.Errorf("%s: problems %v, want exactly %v", tc.name, got, tc.want)
		}
		p := s.Problems[0]
		if p.Record != tc.record || (tc.got != "" && p.Got != tc.got) {
			t.Errorf("%s: first problem %+v, want record %d got %q", tc.name, p, tc.record, tc.got)
		}
		sum := int64(0)
		for _, tr := range s.Transfers {
			sum += tr.Amount
		}
		if sum != s.Total {
			t.Errorf("%s: total %d, amounts add up to %d", tc.name, s.Total, sum)
		}
	}
}

// TestParseLimits: past MaxRecords the rest is not read, and problems stop
// being kept past MaxProblems but are still counted.
func TestParseLimits(t *testing.T) {
	one := build(t, zengintest.Kyuyo())
	header, data, tail := one[:RecordLen], one[RecordLen:2*RecordLen], one[5*RecordLen:]
	big := slices.Concat(header, bytes.Repeat(data, MaxRecords), tail)
	s := Parse(big)
	// The trailer is beyond the limit: nothing to compare with.
	if got := codes(s); !slices.Equal(got, []ProblemCode{ProblemTooManyRecords}) {
		t.Errorf("problems %v", got)
	}
	if s.Count() != MaxRecords-1 {
		t.Errorf("read %d transfers", s.Count())
	}
	if s := parse(one, 3); s.Count() != 2 || s.Problems[0].Code != ProblemTooManyRecords || s.Problems[0].Want != "3" {
		t.Errorf("parse(data, 3): %d transfers, %v", s.Count(), s.Problems)
	}

	g := zengintest.Sogo()
	for i := 0; i < MaxProblems+20; i++ {
		g.Transfers = append(g.Transfers, g.Transfers[0])
	}
	bad := build(t, g)
	for i := 1; i <= len(g.Transfers); i++ {
		bad[record(i, "")+42] = '5' // account type
	}
	s = Parse(bad)
	if len(s.Problems) != MaxProblems || s.Omitted != len(g.Transfers)-MaxProblems {
		t.Errorf("%d problems kept, %d omitted", len(s.Problems), s.Omitted)
	}
}

// TestProblemMessages: every problem says where and what, in both
// languages, and amounts are written as the pages write them.
func TestProblemMessages(t *testing.T) {
	all := []ProblemCode{ProblemEmpty, ProblemRecordLength, ProblemSeparator, ProblemRecordType, ProblemNoHeader,
		ProblemSecondHeader, ProblemDataAfterTrailer, ProblemSecondTrailer, ProblemAfterEnd, ProblemNoTrailer,
		ProblemNoEnd, ProblemType, ProblemCodeSection, ProblemDate, ProblemNotDigits, ProblemAccountType, ProblemBlank,
		ProblemZeroAmount, ProblemCharset, ProblemTrailerCount, ProblemTrailerTotal, ProblemNoTransfers,
		ProblemTooManyRecords, ProblemEncoding, ProblemCSV, ProblemColumns, ProblemColumnMap}
	seen := map[string]ProblemCode{}
	for _, c := range all {
		p := Problem{Code: c, Record: 3, Field: FieldAmount, Want: "1", Got: "2", Pos: 4}
		ja, en := p.Japanese(), p.English()
		if ja == en || ja == string(c) || en == string(c) || !strings.HasPrefix(ja, "レコード3: ") || !strings.HasPrefix(en, "Record 3: ") {
			t.Errorf("%s: %q / %q", c, ja, en)
		}
		if prev, dup := seen[en]; dup {
			t.Errorf("%s and %s say the same: %q", c, prev, en)
		}
		seen[en] = c
		if p.String() != en {
			t.Errorf("%s: String() = %q", c, p.String())
		}
	}
	p := Problem{Code: ProblemTrailerTotal, Want: "1500000", Got: "1499999"}
	if ja := p.Japanese(); ja != "トレーラーレコードの合計金額は1,500,000円ですが、振込金額の合計は1,499,999円です。" {
		t.Errorf("ja: %q", ja)
	}
	if en := p.English(); en != "The trailer record says ¥1,500,000 in total, but the amounts add up to ¥1,499,999." {
		t.Errorf("en: %q", en)
	}
	row := Problem{Code: ProblemNotDigits, Record: 7, Field: FieldBankCode, Want: "4", Got: "1", row: true}
	if ja := row.Japanese(); ja != "7行目: 金融機関コード「1」が4桁の数字ではありません。" {
		t.Errorf("row ja: %q", ja)
	}
	if en := row.English(); en != "Row 7: bank code \"1\" is not 4 digits." {
		t.Errorf("row en: %q", en)
	}
}

func TestKnownType(t *testing.T) {
	for code, want := range map[string]bool{"21": true, "11": true, "12": true, "71": true, "72": true, "91": false, "": false, "2": false} {
		if KnownType(code) != want {
			t.Errorf("KnownType(%q) = %v", code, !want)
		}
	}
	s := &Summary{TypeCode: "91"}
	if s.TypeJa() != "" || s.TypeEn() != "" {
		t.Error("an unknown type has a name")
	}
}

// BenchmarkParse reads a 10,000-transfer file with CR LF line breaks.
func BenchmarkParse(b *testing.B) {
	f := zengintest.Kyuyo()
	f.LineBreak = "\r\n"
	for len(f.Transfers) < 10_000 {
		f.Transfers = append(f.Transfers, f.Transfers[len(f.Transfers)%4])
	}
	data := build(b, f)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if s := Parse(data); s.Doubtful() {
			b.Fatal(s.Problems)
		}
	}
}
