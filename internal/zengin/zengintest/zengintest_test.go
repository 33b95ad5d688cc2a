package zengintest

import (
	"strings"
	"testing"
)

// col returns columns from..to of a record, counted from 1 as the bank
// documents count them (参考資料 持込規格: 種別コード 2–3, 依頼人名 15–54…),
// so this test states the layout independently of the 0-based offsets the
// generator and the parser use.
func col(rec []byte, from, to int) string { return string(rec[from-1 : to]) }

func TestLayout(t *testing.T) {
	for _, lb := range []string{"", "\r\n", "\n"} {
		f := Sogo()
		f.LineBreak = lb
		b := f.MustBytes()
		n := 120 + len(lb)
		if len(b) != n*(len(f.Transfers)+3) {
			t.Fatalf("%q: %d bytes", lb, len(b))
		}
		recs := make([][]byte, 0, len(b)/n)
		for i := 0; i < len(b); i += n {
			if string(b[i+120:i+n]) != lb {
				t.Fatalf("%q: record %d not followed by the line break", lb, i/n+1)
			}
			recs = append(recs, b[i:i+120])
		}
		h, d, tr, end := recs[0], recs[1], recs[len(recs)-2], recs[len(recs)-1]
		for _, c := range []struct {
			rec      []byte
			from, to int
			want     string
		}{
			{h, 1, 1, "1"},
			{h, 2, 3, "21"},
			{h, 4, 4, "0"},
			{h, 5, 14, "1234567890"},
			{h, 15, 54, "\xb6)\xc3\xde\xd3\xbc\xd6\xb3\xbc\xde" + strings.Repeat(" ", 30)}, // ｶ)ﾃﾞﾓｼﾖｳｼﾞ
			{h, 55, 58, "1207"},
			{h, 59, 62, "9999"},
			{h, 78, 80, "001"},
			{h, 96, 96, "1"},
			{h, 97, 103, "1234567"},
			{h, 104, 120, strings.Repeat(" ", 17)},
			{d, 1, 1, "2"},
			{d, 2, 5, "0001"},
			{d, 21, 23, "100"},
			{d, 39, 42, "0000"},
			{d, 43, 43, "1"},
			{d, 44, 50, "1111111"},
			{d, 81, 90, "0001500000"},
			{d, 112, 112, "7"},
			{tr, 1, 1, "8"},
			{tr, 2, 7, "000006"},
			{tr, 8, 19, "000003672400"},
			{tr, 20, 120, strings.Repeat(" ", 101)},
			{end, 1, 120, "9" + strings.Repeat(" ", 119)},
		} {
			if got := col(c.rec, c.from, c.to); got != c.want {
				t.Errorf("%q: columns %d–%d = %q, want %q", lb, c.from, c.to, got, c.want)
			}
		}
	}
	// 給与 data records have no 振込指定区分.
	if d := Kyuyo().MustBytes()[120:240]; d[111] != ' ' {
		t.Errorf("給与 column 112 = %q", d[111])
	}
}

func TestTrailerOverride(t *testing.T) {
	five, total := int64(5), int64(123)
	f := Kyuyo()
	f.TrailerCount, f.TrailerTotal = &five, &total
	b := f.MustBytes()
	tr := b[len(b)-240 : len(b)-120]
	if string(tr[:19]) != "8000005000000000123" {
		t.Errorf("trailer %q", tr[:19])
	}
}

func TestBytesRefuses(t *testing.T) {
	for name, mutate := range map[string]func(*File){
		"kanji name":         func(f *File) { f.Transfers[0].Recipient = "山田太郎" },
		"full-width kana":    func(f *File) { f.Transfers[0].Recipient = "ヤマダ" },
		"backslash":          func(f *File) { f.Transfers[0].Recipient = `A\B` },
		"long recipient":     func(f *File) { f.Transfers[0].Recipient = strings.Repeat("ｱ", 31) },
		"long bank code":     func(f *File) { f.Transfers[0].BankCode = "00001" },
		"letters in date":    func(f *File) { f.Header.Date = "12O7" },
		"negative amount":    func(f *File) { f.Transfers[0].Amount = -1 },
		"amount of 11 digit": func(f *File) { f.Transfers[0].Amount = 10_000_000_000 },
	} {
		f := Sogo()
		mutate(&f)
		if b, err := f.Bytes(); err == nil {
			t.Errorf("%s: wrote %q", name, b[:20])
		}
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("MustBytes did not panic")
		}
	}()
	f := Sogo()
	f.Header.RequesterName = "株式会社"
	f.MustBytes()
}
