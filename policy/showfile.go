package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/otpgate/otpgate/internal/zengin"
)

// FileDisplay says how the confirm page summarises a transfer file uploaded
// with a bulk or payroll transfer (総合振込, 給与・賞与振込): which multipart
// field holds it and how it is laid out. The summary (type, requester, date,
// count, total, largest transfers, SHA-256) is read from the held request,
// like every shown field.
type FileDisplay struct {
	// Field is the name of the multipart/form-data part holding the file,
	// compared ignoring case like any parameter name.
	Field string `json:"field"`

	// Format is "zengin" (全銀協規定形式, 120-byte records) or "csv".
	Format string `json:"format"`

	// Columns is the column map of a CSV file, as zengin.ParseColumnMap
	// reads it: "type=21 header_rows=1 bank_code=1 branch_code=3
	// account_number=6 recipient=7 amount=8". Required for csv, refused for
	// zengin.
	Columns string `json:"columns,omitempty"`

	// Charset of a CSV file: "utf-8" or "shift_jis". Default: utf-8, which
	// fails loudly on a Shift_JIS file (its bytes are not valid UTF-8) where
	// the opposite default could read a UTF-8 file as other characters.
	Charset string `json:"charset,omitempty"`
}

// fileSpec is a FileDisplay compiled.
type fileSpec struct {
	field   string
	csv     bool
	columns zengin.ColumnMap
	charset zengin.Charset
}

// compile checks a FileDisplay and reads its column map and charset.
func (f FileDisplay) compile() (fileSpec, error) {
	s := fileSpec{field: f.Field}
	if f.Field == "" {
		return s, errors.New("show_file: no field: name the multipart field that holds the file")
	}
	switch f.Format {
	case zengin.FormatZengin:
		if f.Columns != "" || f.Charset != "" {
			return s, errors.New("show_file zengin: a column map and a charset are only for csv (a Zengin file is 120-byte records in JIS8)")
		}
	case zengin.FormatCSV:
		s.csv = true
		if f.Columns == "" {
			return s, errors.New(`show_file csv: no column map; write one such as "type=21 header_rows=1 bank_code=1 branch_code=3 account_number=6 recipient=7 amount=8"`)
		}
		m, err := zengin.ParseColumnMap(f.Columns)
		if err != nil {
			return s, fmt.Errorf("show_file csv: %w", err)
		}
		s.columns = m
		s.charset = zengin.UTF8
		if f.Charset != "" {
			if s.charset, err = zengin.ParseCharset(f.Charset); err != nil {
				return s, fmt.Errorf("show_file csv: %w", err)
			}
		}
	default:
		return s, fmt.Errorf("show_file: unknown format %q (want zengin or csv)", f.Format)
	}
	return s, nil
}

// ErrNoFile is reported by SummariseFile when the request holds no part of
// the file's field; ErrFileUnreadable when its body cannot be read as
// multipart/form-data the way the bank reads it, or holds more than one
// part of that name. Either way the confirm page cannot say what the bank
// will execute.
var (
	ErrNoFile         = errors.New("otpgate: the request holds no transfer file in the configured field")
	ErrFileUnreadable = errors.New("otpgate: the transfer file cannot be read exactly as the bank reads it")
)

// SummariseFile reads the transfer file that f names from a held request,
// given its Content-Type header and body, and summarises it. The summary
// never hides a problem: a file that is not exactly one of its format is
// in Summary.Problems (Summary.Doubtful). An error means no file could be
// found to summarise: ErrNoFile or ErrFileUnreadable, wrapped.
//
// It reads the body as Classify does (the same part-name rules), so it
// finds the file the bank will read, and can be called again at confirm
// time with the stored request.
func SummariseFile(f FileDisplay, contentType string, body []byte) (*zengin.Summary, error) {
	spec, err := f.compile()
	if err != nil {
		return nil, err
	}
	return spec.summarise(contentType, body)
}

func (s fileSpec) summarise(contentType string, body []byte) (*zengin.Summary, error) {
	data, err := filePart(contentType, body, s.field)
	if err != nil {
		return nil, err
	}
	if s.csv {
		return zengin.ParseCSV(data, s.columns, s.charset), nil
	}
	return zengin.Parse(data), nil
}

// filePart returns the body of the one multipart part named field.
func filePart(contentType string, body []byte, field string) ([]byte, error) {
	media, ps, err := mime.ParseMediaType(contentType)
	if err != nil || media != "multipart/form-data" || ps["boundary"] == "" {
		return nil, fmt.Errorf("%w: the body is not multipart/form-data", ErrNoFile)
	}
	mr := multipart.NewReader(bytes.NewReader(body), ps["boundary"])
	var found []byte
	seen := false
	for n := 1; ; n++ {
		// Raw, as in parseMultipart: the bank does not undo
		// quoted-printable either.
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFileUnreadable, err)
		}
		if te := part.Header.Get("Content-Transfer-Encoding"); te != "" {
			return nil, fmt.Errorf("%w: part %d has Content-Transfer-Encoding %q", ErrFileUnreadable, n, te)
		}
		name, _, _, err := partName(part.Header.Values("Content-Disposition"))
		if err != nil {
			return nil, fmt.Errorf("%w: part %d: %v", ErrFileUnreadable, n, err)
		}
		if !strings.EqualFold(name, field) {
			continue
		}
		if seen {
			// "file" and "FILE": the bank reads one of them, and which
			// depends on the server.
			return nil, fmt.Errorf("%w: more than one part named %q", ErrFileUnreadable, field)
		}
		seen = true
		if found, err = io.ReadAll(part); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFileUnreadable, err)
		}
	}
	if !seen {
		return nil, fmt.Errorf("%w: no part named %q", ErrNoFile, field)
	}
	return found, nil
}

// readFile summarises the rule's transfer file into m and, when the rule
// refuses doubtful files, refuses an operation whose file cannot be read or
// has problems. The refusal names the first problem (where in the file, and
// what): a transfer file holds no secret, and the customer must know what
// to correct.
func (m *Match) readFile(spec *fileSpec, contentType string, body []byte) {
	m.File, m.FileErr = spec.summarise(contentType, body)
	if !m.Rule.RefuseDoubtfulFiles {
		return
	}
	var why string
	switch {
	case m.FileErr != nil:
		why = strings.TrimPrefix(m.FileErr.Error(), "otpgate: ")
	case m.File.Doubtful():
		why = "the transfer file has problems: " + strings.TrimSuffix(m.File.Problems[0].English(), ".")
		if more := len(m.File.Problems) - 1 + m.File.Omitted; more > 0 {
			why += fmt.Sprintf(" (and %d more)", more)
		}
	default:
		return
	}
	m.Verdict, m.Doubt = Refused, true
	m.Err = refusef("%s; the bank refuses files it cannot read exactly: correct the file and upload it again", why)
}

// Rule returns the compiled rule named name (defaults filled in, as
// Match.Rule), or nil. The gateway refuses rules named alike at load, so a
// held operation's rule name finds its rule again at confirm time, for its
// title and file display.
func (p *Policy) Rule(name string) *Rule {
	for i := range p.rules {
		if p.rules[i].Name == name {
			return &p.rules[i]
		}
	}
	return nil
}
