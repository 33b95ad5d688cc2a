package zengin

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

// checkSummary holds for every summary, whatever the input: the total is
// the sum of the listed amounts, the limits hold, the digest is the
// input's, Top is ordered; and a summary without problems is one a bank
// reads one way only — a known type, a trailer that agrees, every
// transfer's codes digits and its amount positive, every name half-width.
func checkSummary(t *testing.T, data []byte, s *Summary) {
	t.Helper()
	var sum int64
	for _, tr := range s.Transfers {
		if tr.Amount < 0 {
			t.Fatalf("negative amount %d", tr.Amount)
		}
		sum += tr.Amount
	}
	if sum != s.Total {
		t.Fatalf("total %d, listed amounts add up to %d", s.Total, sum)
	}
	if s.Count() > MaxRecords || len(s.Problems) > MaxProblems || s.Omitted < 0 {
		t.Fatalf("%d transfers, %d problems", s.Count(), len(s.Problems))
	}
	if d := sha256.Sum256(data); s.SHA256 != hex.EncodeToString(d[:]) {
		t.Fatal("digest is not the input's")
	}
	top := s.Top(10)
	for i := 1; i < len(top); i++ {
		if top[i].Amount > top[i-1].Amount {
			t.Fatalf("Top out of order: %v", top)
		}
	}
	for _, p := range s.Problems {
		if p.Japanese() == "" || p.English() == "" {
			t.Fatalf("problem %+v says nothing", p)
		}
	}
	if s.Doubtful() {
		return
	}
	if s.Omitted != 0 || !KnownType(s.TypeCode) || s.Count() == 0 {
		t.Fatalf("no problem, yet type %q, %d transfers, %d omitted", s.TypeCode, s.Count(), s.Omitted)
	}
	if s.Format == FormatZengin {
		if s.Trailer == nil || s.Trailer.Count != int64(s.Count()) || s.Trailer.Total != s.Total {
			t.Fatalf("no problem, yet trailer %+v for %d transfers of %d", s.Trailer, s.Count(), s.Total)
		}
		if !validMMDD(s.Date) {
			t.Fatalf("no problem, yet date %q", s.Date)
		}
	}
	for _, tr := range s.Transfers {
		if tr.Amount <= 0 || len(tr.To.BankCode) != 4 || len(tr.To.BranchCode) != 3 ||
			!digits([]byte(tr.To.BankCode+tr.To.BranchCode+tr.To.Number)) || strings.TrimSpace(tr.Recipient) == "" {
			t.Fatalf("no problem, yet transfer %+v", tr)
		}
		for _, name := range []string{tr.Recipient, tr.To.BankName, tr.To.BranchName} {
			if !utf8.ValidString(name) || strings.ContainsRune(name, utf8.RuneError) {
				t.Fatalf("no problem, yet name %q", name)
			}
			if _, bad := unshowable(name); bad {
				t.Fatalf("no problem, yet name %q", name)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, file := range []zengintest.File{zengintest.Sogo(), zengintest.Kyuyo()} {
		for _, lb := range []string{"", "\r\n", "\n"} {
			file.LineBreak = lb
			b := file.MustBytes()
			f.Add(b)
			f.Add(b[:len(b)-70])
			f.Add(append(b, 0x1a))
		}
	}
	bad := zengintest.Sogo()
	n := int64(2)
	bad.TrailerCount = &n
	f.Add(bad.MustBytes())
	f.Add([]byte{})
	f.Add([]byte("1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSummary(t, data, Parse(data))
	})
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte(payrollCSV), false)
	f.Add([]byte("\ufeff"+payrollCSV), false)
	f.Add([]byte("h\n0001,x,100,y,1,1,\"a\"\"b\",1\n"), false)
	f.Add([]byte("h\n0001,\x82\xdd,100,y,1,1,z,1\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, sjis bool) {
		cs := UTF8
		if sjis {
			cs = ShiftJIS
		}
		checkSummary(t, data, ParseCSV(data, payrollMap, cs))
	})
}
