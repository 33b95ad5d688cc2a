package policy

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/zengin"
	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

func TestCompileDisplayOptions(t *testing.T) {
	base := func(mod func(r *Rule)) []Rule {
		r := Rule{Kind: Transfer, Paths: []string{"/t"}}
		mod(&r)
		return []Rule{r}
	}
	csvMap := "type=21 header_rows=1 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=5"
	tests := []struct {
		name    string
		mod     func(r *Rule)
		wantErr string // "" = compiles
	}{
		{"yen", func(r *Rule) { r.Show = []Field{{Name: "amount", Format: "yen"}} }, ""},
		{"every format", func(r *Rule) {
			r.Show = []Field{{Name: "a", Format: "account"}, {Name: "d", Format: "date"}, {Name: "c", Format: "code"},
				{Name: "b", Format: "bank"}, {Name: "br", Format: "branch"}, {Name: "p", Format: "plain"}}
		}, ""},
		{"unknown format", func(r *Rule) { r.Show = []Field{{Name: "amount", Format: "money"}} }, `shown field "amount": unknown display format "money"`},
		{"format in capitals", func(r *Rule) { r.Show = []Field{{Name: "amount", Format: "YEN"}} }, `unknown display format "YEN"`},
		{"branch without bank", func(r *Rule) { r.Show = []Field{{Name: "br", Format: "branch"}} }, "format branch needs a field of format bank shown before it"},
		{"branch before bank", func(r *Rule) {
			r.Show = []Field{{Name: "br", Format: "branch"}, {Name: "b", Format: "bank"}}
		}, "format branch needs"},
		{"zengin file", func(r *Rule) {
			r.ShowFile = &FileDisplay{Field: "file", Format: "zengin"}
			r.RefuseDoubtfulFiles = true
		}, ""},
		{"csv file", func(r *Rule) {
			r.ShowFile = &FileDisplay{Field: "file", Format: "csv", Columns: csvMap, Charset: "shift_jis"}
		}, ""},
		{"file without field", func(r *Rule) { r.ShowFile = &FileDisplay{Format: "zengin"} }, "show_file: no field"},
		{"unknown file format", func(r *Rule) { r.ShowFile = &FileDisplay{Field: "file", Format: "xml"} }, `unknown format "xml"`},
		{"csv without map", func(r *Rule) { r.ShowFile = &FileDisplay{Field: "file", Format: "csv"} }, "no column map"},
		{"csv with a bad map", func(r *Rule) { r.ShowFile = &FileDisplay{Field: "file", Format: "csv", Columns: "amount=x"} }, "show_file csv: column map"},
		{"csv with a map lacking columns", func(r *Rule) { r.ShowFile = &FileDisplay{Field: "file", Format: "csv", Columns: "type=21 amount=5"} }, "show_file csv:"},
		{"csv with a bad charset", func(r *Rule) {
			r.ShowFile = &FileDisplay{Field: "file", Format: "csv", Columns: csvMap, Charset: "latin1"}
		}, `unknown charset "latin1"`},
		{"zengin with a map", func(r *Rule) { r.ShowFile = &FileDisplay{Field: "file", Format: "zengin", Columns: csvMap} }, "only for csv"},
		{"refuse without show_file", func(r *Rule) { r.RefuseDoubtfulFiles = true }, "refuse_doubtful_files without show_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(base(tt.mod))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Compile: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Compile: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestCompileKeepsDisplayOptions(t *testing.T) {
	rules := []Rule{{Kind: BillPayment, Paths: []string{"/pay"}, Title: "税金・各種料金の払込", TitleEn: "Tax and bill payment",
		Show:     []Field{{Name: "amount", Label: "金額", Format: "yen"}, {Name: "memo", Format: "plain"}},
		ShowFile: &FileDisplay{Field: "file", Format: "zengin"}}}
	p := mustCompile(t, rules)
	rules[0].ShowFile.Field = "changed" // the policy keeps its own copy
	m := p.Classify(req("POST", "/pay", formType), []byte("amount=1500000&memo=x"))
	if m == nil {
		t.Fatal("no match")
	}
	r := m.Rule
	if r.Title != "税金・各種料金の払込" || r.TitleEn != "Tax and bill payment" {
		t.Errorf("titles: %q %q", r.Title, r.TitleEn)
	}
	if r.Show[0].Format != "yen" || r.Show[1].Format != "" {
		t.Errorf("formats: %q %q, want yen and plain as \"\"", r.Show[0].Format, r.Show[1].Format)
	}
	if r.ShowFile.Field != "file" {
		t.Errorf("ShowFile.Field %q: the caller's change reached the policy", r.ShowFile.Field)
	}
}

// multipartBody writes parts (name, filename, content) as multipart/form-data
// and returns the Content-Type and body.
func multipartBody(t testing.TB, parts ...[3]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		cd := `form-data; name="` + p[0] + `"`
		if p[1] != "" {
			cd += `; filename="` + p[1] + `"`
			h.Set("Content-Type", "application/octet-stream")
		}
		h.Set("Content-Disposition", cd)
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write([]byte(p[2]))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

func int64p(n int64) *int64 { return &n }

func TestSummariseFile(t *testing.T) {
	sogo := string(zengintest.Sogo().MustBytes())
	zen := FileDisplay{Field: "file", Format: "zengin"}
	ct, body := multipartBody(t, [3]string{"note", "", "x"}, [3]string{"FILE", "sogo.txt", sogo})
	s, err := SummariseFile(zen, ct, body)
	if err != nil {
		t.Fatalf("SummariseFile: %v", err)
	}
	if s.Format != zengin.FormatZengin || s.TypeCode != zengintest.TypeSogo || s.Count() != 6 || s.Doubtful() {
		t.Fatalf("summary: format %q type %q count %d problems %v", s.Format, s.TypeCode, s.Count(), s.Problems)
	}
	if want := zengin.Parse([]byte(sogo)).SHA256; s.SHA256 != want {
		t.Errorf("SHA256 %s, want the file's %s", s.SHA256, want)
	}

	csvFile := "bank,branch,account,name,amount\n0001,100,1234567,ﾔﾏﾀﾞ ﾀﾛｳ,1500000\n"
	csvSpec := FileDisplay{Field: "file", Format: "csv", Columns: "type=21 header_rows=1 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=5"}
	ct, body = multipartBody(t, [3]string{"file", "a.csv", csvFile})
	s, err = SummariseFile(csvSpec, ct, body)
	if err != nil || s.Format != zengin.FormatCSV || s.Count() != 1 || s.Total != 1500000 || s.Doubtful() {
		t.Fatalf("csv: %+v, %v", s, err)
	}

	twiceCT, twice := multipartBody(t, [3]string{"file", "a.txt", sogo}, [3]string{"File", "b.txt", sogo})
	otherCT, other := multipartBody(t, [3]string{"other", "a.txt", sogo})
	for _, tt := range []struct {
		name     string
		ct, body string
		want     error
	}{
		{"form body", "application/x-www-form-urlencoded", "file=x", ErrNoFile},
		{"no such part", otherCT, string(other), ErrNoFile},
		{"two parts of the name", twiceCT, string(twice), ErrFileUnreadable},
		{"truncated in the file", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n" + sogo[:200], ErrFileUnreadable},
		{"transfer encoding", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n--x--\r\n", ErrFileUnreadable},
		{"RFC 2231 name", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name*=UTF-8''file; filename=\"a\"\r\n\r\nABC\r\n--x--\r\n", ErrFileUnreadable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SummariseFile(zen, tt.ct, []byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestClassifyShowFile(t *testing.T) {
	good := string(zengintest.Sogo().MustBytes())
	badTrailer := zengintest.Kyuyo()
	badTrailer.TrailerTotal = int64p(1)
	bad := string(badTrailer.MustBytes())
	rule := func(refuse bool) []Rule {
		return []Rule{{Kind: BulkTransfer, Paths: []string{"/bulk/execute"}, Show: []Field{{Name: "file"}},
			ShowFile: &FileDisplay{Field: "file", Format: "zengin"}, RefuseDoubtfulFiles: refuse}}
	}
	held, refusing := mustCompile(t, rule(false)), mustCompile(t, rule(true))
	goodCT, goodBody := multipartBody(t, [3]string{"file", "sogo.txt", good})
	badCT, badBody := multipartBody(t, [3]string{"file", "kyuyo.txt", bad})
	noneCT, noneBody := multipartBody(t, [3]string{"memo", "", "x"})

	tests := []struct {
		name        string
		p           *Policy
		ct          string
		body        []byte
		wantVerdict Verdict
		wantCount   int    // transfers in Match.File; -1: no summary
		wantErr     string // in Match.Err
	}{
		{"good file, held", held, goodCT, goodBody, Exact, 6, ""},
		{"good file, refusing rule", refusing, goodCT, goodBody, Exact, 6, ""},
		{"trailer disagrees, held", held, badCT, badBody, Exact, 4, ""},
		{"trailer disagrees, refused", refusing, badCT, badBody, Refused, 4, "the transfer file has problems: The trailer record says ¥1 in total, but the amounts add up to ¥1,042,300; the bank refuses"},
		{"no file, held", held, noneCT, noneBody, Exact, -1, ""},
		{"no file, refused", refusing, noneCT, noneBody, Refused, -1, `no part named "file"`},
		// The file is all the rule shows: a body that cannot be read is
		// refused like one whose shown fields cannot be read.
		{"unreadable body", held, "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a/b\"\r\n\r\nx\r\n--x--\r\n"), Refused, -1, "directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.p.Classify(req("POST", "/bulk/execute", "Content-Type: "+tt.ct), tt.body)
			if m == nil {
				t.Fatal("no match")
			}
			if m.Verdict != tt.wantVerdict {
				t.Errorf("verdict %q, want %q (err %v)", m.Verdict, tt.wantVerdict, m.Err)
			}
			switch {
			case tt.wantCount < 0 && m.File != nil:
				t.Errorf("summary of %d transfers, want none", m.File.Count())
			case tt.wantCount >= 0 && (m.File == nil || m.File.Count() != tt.wantCount):
				t.Errorf("summary %+v (err %v), want %d transfers", m.File, m.FileErr, tt.wantCount)
			}
			if tt.wantErr != "" && (m.Err == nil || !strings.Contains(m.Err.Error(), tt.wantErr)) {
				t.Errorf("err %v, want %q", m.Err, tt.wantErr)
			}
			if m.Verdict == Refused && !strings.HasPrefix(m.Err.Error(), "otpgate: ") {
				t.Errorf("refusal %q does not start with otpgate:", m.Err)
			}
			if wantDoubt := bytes.Equal(tt.body, badBody); m.File != nil && m.File.Doubtful() != wantDoubt {
				t.Errorf("doubtful %v, want %v: %v", m.File.Doubtful(), wantDoubt, m.File.Problems)
			}
		})
	}
}

func TestRuleByName(t *testing.T) {
	p := mustCompile(t, []Rule{
		{Kind: Transfer, Paths: []string{"/t"}, Title: "振込", Show: []Field{{Name: "amount", Format: "yen"}}},
		{Name: "payroll", Kind: BulkTransfer, Paths: []string{"/p"}, ShowFile: &FileDisplay{Field: "file", Format: "zengin"}},
	})
	if r := p.Rule("transfer"); r == nil || r.Title != "振込" {
		t.Errorf("by its default name: %+v", r)
	}
	if r := p.Rule("payroll"); r == nil || r.ShowFile == nil || r.ShowFile.Format != "zengin" {
		t.Errorf("by its name: %+v", r)
	}
	if p.Rule("bulk_transfer") != nil || p.Rule("") != nil {
		t.Error("a rule under a name it does not have")
	}
	m := p.Classify(req("POST", "/t", formType), []byte("amount=1500000"))
	if m == nil || m.Fields[0].Format != "yen" || m.Fields[0].Value != "1500000" {
		t.Errorf("shown field %+v: the format travels with the value", m)
	}
}
