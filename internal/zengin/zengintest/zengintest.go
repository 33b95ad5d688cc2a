// Package zengintest writes Zengin-format transfer files (総合振込, 給与振込,
// 賞与振込) for tests and the demo: valid 120-byte records in JIS8, names in
// half-width katakana, with or without line breaks, and with a trailer that
// can be made to disagree.
package zengintest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The 種別コード of the files written here.
const (
	TypeSogo  = "21" // 総合振込
	TypeKyuyo = "11" // 給与振込
	TypeShoyo = "12" // 賞与振込
)

// Header is the header record. Names are written as Unicode half-width
// katakana ("ｶ)ﾃﾞﾓｼﾖｳｼﾞ"), digits and upper-case letters; numeric fields
// as digits, zero-filled to their width.
type Header struct {
	Type          string // 種別コード
	RequesterCode string // up to 10 digits
	RequesterName string // up to 40 characters
	Date          string // MMDD
	BankCode      string
	BankName      string
	BranchCode    string
	BranchName    string
	AccountType   string
	AccountNumber string
}

// Transfer is a data record.
type Transfer struct {
	BankCode      string // 4 digits
	BankName      string // up to 15 characters
	BranchCode    string // 3 digits
	BranchName    string // up to 15 characters
	AccountType   string // 1 普通, 2 当座, 4 貯蓄, 9 その他
	AccountNumber string // up to 7 digits
	Recipient     string // up to 30 characters
	Amount        int64  // up to 10 digits
}

// File is a whole file.
type File struct {
	Header    Header
	Transfers []Transfer
	// LineBreak follows every record: "" (records back to back, as most
	// banks take them), "\r\n" or "\n".
	LineBreak string
	// TrailerCount and TrailerTotal, when not nil, replace the trailer's
	// computed 合計件数 and 合計金額: a file whose trailer disagrees.
	TrailerCount, TrailerTotal *int64
}

// Bytes writes the file. It fails on a value that does not fit its field
// or is not JIS8.
func (f File) Bytes() ([]byte, error) {
	var b bytes.Buffer
	rec := func(fields ...string) error {
		line := strings.Join(fields, "")
		enc, err := jis8(line)
		if err != nil {
			return err
		}
		if len(enc) > 120 {
			return fmt.Errorf("record of %d bytes", len(enc))
		}
		b.Write(enc)
		b.WriteString(strings.Repeat(" ", 120-len(enc)))
		b.WriteString(f.LineBreak)
		return nil
	}
	h := f.Header
	var err error
	n := func(v string, width int) string {
		s, e := num(v, width)
		if e != nil && err == nil {
			err = e
		}
		return s
	}
	c := func(v string, width int) string {
		s, e := text(v, width)
		if e != nil && err == nil {
			err = e
		}
		return s
	}
	if e := rec("1", n(h.Type, 2), "0", n(h.RequesterCode, 10), c(h.RequesterName, 40), n(h.Date, 4),
		n(h.BankCode, 4), c(h.BankName, 15), n(h.BranchCode, 3), c(h.BranchName, 15),
		n(h.AccountType, 1), n(h.AccountNumber, 7)); e != nil {
		return nil, e
	}
	var total int64
	for _, t := range f.Transfers {
		// 総合振込 data records end with 振込指定区分 (7: 電信) at @111;
		// 給与・賞与 have a dummy there.
		kind := ""
		if h.Type == TypeSogo {
			kind = "7"
		}
		if e := rec("2", n(t.BankCode, 4), c(t.BankName, 15), n(t.BranchCode, 3), c(t.BranchName, 15),
			"0000", n(t.AccountType, 1), n(t.AccountNumber, 7), c(t.Recipient, 30),
			n(strconv.FormatInt(t.Amount, 10), 10), "0", strings.Repeat("0", 20), kind); e != nil {
			return nil, e
		}
		total += t.Amount
	}
	count := int64(len(f.Transfers))
	if f.TrailerCount != nil {
		count = *f.TrailerCount
	}
	if f.TrailerTotal != nil {
		total = *f.TrailerTotal
	}
	if e := rec("8", n(strconv.FormatInt(count, 10), 6), n(strconv.FormatInt(total, 10), 12)); e != nil {
		return nil, e
	}
	if e := rec("9"); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// MustBytes is Bytes for fixed data that is known to fit; it panics
// otherwise.
func (f File) MustBytes() []byte {
	b, err := f.Bytes()
	if err != nil {
		panic("zengintest: " + err.Error())
	}
	return b
}

// num right-aligns digits in width, filling with zeros.
func num(v string, width int) (string, error) {
	if len(v) > width {
		return "", fmt.Errorf("%q is longer than %d digits", v, width)
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return "", fmt.Errorf("%q is not digits", v)
		}
	}
	return strings.Repeat("0", width-len(v)) + v, nil
}

// text left-aligns v in width characters, filling with spaces. Every
// JIS8 character is one byte, so characters count as bytes.
func text(v string, width int) (string, error) {
	n := len([]rune(v))
	if n > width {
		return "", fmt.Errorf("%q is longer than %d characters", v, width)
	}
	return v + strings.Repeat(" ", width-n), nil
}

// jis8 encodes half-width text as JIS X 0201 bytes.
func jis8(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r == '¥':
			out = append(out, 0x5C)
		case r == '‾':
			out = append(out, 0x7E)
		case r >= 0x20 && r < 0x7F && r != '\\' && r != '~':
			out = append(out, byte(r))
		case r >= 0xFF61 && r <= 0xFF9F:
			out = append(out, byte(r-0xFF61+0xA1))
		default:
			return nil, fmt.Errorf("%q is not a half-width (JIS8) character", r)
		}
	}
	return out, nil
}

// Sogo is a 総合振込 file: six transfers from a company to its suppliers,
// for 7 December, with one of 1,500,000 yen.
func Sogo() File {
	return File{
		Header: Header{
			Type: TypeSogo, RequesterCode: "1234567890", RequesterName: "ｶ)ﾃﾞﾓｼﾖｳｼﾞ", Date: "1207",
			BankCode: "9999", BankName: "ﾃﾞﾓｼﾝｸﾐ", BranchCode: "001", BranchName: "ﾎﾝﾃﾝ",
			AccountType: "1", AccountNumber: "1234567",
		},
		Transfers: []Transfer{
			{"0001", "ﾐｽﾞﾎ", "100", "ﾎﾝﾃﾝ", "1", "1111111", "ｶ)ﾔﾏﾀﾞｺｳｷﾞﾖｳ", 1500000},
			{"0005", "ﾐﾂﾋﾞｼﾕ-ｴﾌｼﾞｴｲ", "001", "ﾎﾝﾃﾝ", "2", "0222222", "ﾕ)ｻｸﾗｼﾖｳｶｲ", 324000},
			{"0009", "ﾐﾂｲｽﾐﾄﾓ", "258", "ｱｵﾔﾏ", "1", "3333333", "ｽｽﾞｷ ﾊﾅｺ", 86400},
			{"0036", "ﾗｸﾃﾝ", "251", "ﾀﾞｲﾆｴｲｷﾞﾖｳ", "1", "4444444", "ｶ)ﾐﾄﾞﾘﾌﾞﾂﾘﾕｳ", 1250000},
			{"9900", "ﾕｳﾁﾖ", "018", "ｾﾞﾛｲﾁﾊﾁ", "1", "5555555", "ﾀﾅｶ ｲﾁﾛｳ", 12000},
			{"0001", "ﾐｽﾞﾎ", "005", "ﾏﾙﾉｳﾁ", "4", "0066666", "ﾆﾎﾝﾃﾞﾝｷ(ｶ", 500000},
		},
	}
}

// Kyuyo is a 給与振込 file: four employees paid on the 25th.
func Kyuyo() File {
	return File{
		Header: Header{
			Type: TypeKyuyo, RequesterCode: "1234567890", RequesterName: "ｶ)ﾃﾞﾓｼﾖｳｼﾞ", Date: "0425",
			BankCode: "9999", BankName: "ﾃﾞﾓｼﾝｸﾐ", BranchCode: "001", BranchName: "ﾎﾝﾃﾝ",
			AccountType: "1", AccountNumber: "1234567",
		},
		Transfers: []Transfer{
			{"0001", "ﾐｽﾞﾎ", "100", "ﾎﾝﾃﾝ", "1", "7000001", "ﾔﾏﾀﾞ ﾀﾛｳ", 285000},
			{"0009", "ﾐﾂｲｽﾐﾄﾓ", "258", "ｱｵﾔﾏ", "1", "7000002", "ｻﾄｳ ﾐｻｷ", 312500},
			{"0036", "ﾗｸﾃﾝ", "251", "ﾀﾞｲﾆｴｲｷﾞﾖｳ", "1", "7000003", "ｺﾊﾞﾔｼ ｹﾝｼﾞ", 246800},
			{"9900", "ﾕｳﾁﾖ", "018", "ｾﾞﾛｲﾁﾊﾁ", "1", "7000004", "ﾜﾀﾅﾍﾞ ﾕｳｺ", 198000},
		},
	}
}
