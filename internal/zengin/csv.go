package zengin

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
)

// Charset is the character set of a CSV transfer file.
type Charset string

// The charsets: UTF-8 (a leading byte-order mark is ignored, as Excel
// writes one) and Shift_JIS as Windows writes it (Windows-31J).
const (
	UTF8     Charset = "utf-8"
	ShiftJIS Charset = "shift_jis"
)

// ParseCharset reads a charset name as an operator writes it.
func ParseCharset(s string) (Charset, error) {
	switch strings.ToLower(s) {
	case "utf-8", "utf8":
		return UTF8, nil
	case "shift_jis", "shift-jis", "sjis", "windows-31j", "cp932":
		return ShiftJIS, nil
	}
	return "", fmt.Errorf("unknown charset %q (want utf-8 or shift_jis)", s)
}

// ColumnMap says where a CSV transfer file holds each field: one transfer
// a row, after HeaderRows rows of column titles. Columns count from 1, as in
// a spreadsheet; 0 means the file does not have the field.
type ColumnMap struct {
	BankCode, BankName     int
	BranchCode, BranchName int
	AccountType            int
	AccountNumber          int
	Recipient              int
	Amount                 int
	HeaderRows             int
	// Type is the 種別コード of the files (21 総合振込, 11 給与振込, 12 賞与
	// 振込): a CSV row does not say it, so the operator does.
	Type string
}

// Limits of a column map.
const (
	maxColumn     = 256
	maxHeaderRows = 100
)

// columnKeys are the names ParseColumnMap reads, with the field each sets.
var columnKeys = []struct {
	key string
	col func(*ColumnMap) *int
}{
	{"bank_code", func(m *ColumnMap) *int { return &m.BankCode }},
	{"bank_name", func(m *ColumnMap) *int { return &m.BankName }},
	{"branch_code", func(m *ColumnMap) *int { return &m.BranchCode }},
	{"branch_name", func(m *ColumnMap) *int { return &m.BranchName }},
	{"account_type", func(m *ColumnMap) *int { return &m.AccountType }},
	{"account_number", func(m *ColumnMap) *int { return &m.AccountNumber }},
	{"recipient", func(m *ColumnMap) *int { return &m.Recipient }},
	{"amount", func(m *ColumnMap) *int { return &m.Amount }},
	{"header_rows", func(m *ColumnMap) *int { return &m.HeaderRows }},
}

// ParseColumnMap reads a column map as an operator writes it in the
// configuration: "key=value" words separated by spaces, for example
//
//	type=21 header_rows=1 bank_code=1 branch_code=3 account_type=5 account_number=6 recipient=7 amount=8
//
// with the keys type, header_rows, bank_code, bank_name, branch_code,
// branch_name, account_type, account_number, recipient and amount. The map
// must be valid (see Validate).
func ParseColumnMap(spec string) (ColumnMap, error) {
	var m ColumnMap
	seen := map[string]bool{}
	for _, word := range strings.Fields(spec) {
		key, val, ok := strings.Cut(word, "=")
		if !ok {
			return ColumnMap{}, fmt.Errorf("column map: %q is not key=value", word)
		}
		if seen[key] {
			return ColumnMap{}, fmt.Errorf("column map: %s given twice", key)
		}
		seen[key] = true
		if key == "type" {
			m.Type = val
			continue
		}
		i := keyIndex(key)
		if i < 0 {
			return ColumnMap{}, fmt.Errorf("column map: unknown key %q", key)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return ColumnMap{}, fmt.Errorf("column map: %s=%q is not a number", key, val)
		}
		*columnKeys[i].col(&m) = n
	}
	return m, m.Validate()
}

func keyIndex(key string) int {
	for i, k := range columnKeys {
		if k.key == key {
			return i
		}
	}
	return -1
}

// Validate checks that the map names a known type and the columns a
// transfer needs (bank_code, branch_code, account_number, recipient,
// amount), each column at most once.
func (m ColumnMap) Validate() error {
	if !KnownType(m.Type) {
		return fmt.Errorf("column map: type %q is not 21, 11, 12, 71 or 72", m.Type)
	}
	if m.HeaderRows < 0 || m.HeaderRows > maxHeaderRows {
		return fmt.Errorf("column map: header_rows %d is not 0 to %d", m.HeaderRows, maxHeaderRows)
	}
	used := map[int]string{}
	for _, k := range columnKeys {
		if k.key == "header_rows" {
			continue
		}
		c := *k.col(&m)
		required := k.key == "bank_code" || k.key == "branch_code" || k.key == "account_number" ||
			k.key == "recipient" || k.key == "amount"
		switch {
		case c == 0 && required:
			return fmt.Errorf("column map: %s is required", k.key)
		case c == 0:
			continue
		case c < 0 || c > maxColumn:
			return fmt.Errorf("column map: %s=%d is not a column 1 to %d", k.key, c, maxColumn)
		case used[c] != "":
			return fmt.Errorf("column map: %s and %s are both column %d", used[c], k.key, c)
		}
		used[c] = k.key
	}
	return nil
}

// lastColumn is the highest column the map reads.
func (m ColumnMap) lastColumn() int {
	last := 0
	for _, k := range columnKeys {
		if k.key != "header_rows" {
			last = max(last, *k.col(&m))
		}
	}
	return last
}

// ParseCSV reads a CSV transfer file laid out by m, in charset cs. It never
// fails: what it cannot read is in Summary.Problems. The header fields
// (requester, date) stay empty: a CSV row does not have them. Numbers are
// read as strictly as in the fixed format: bank codes of 4 digits, branch
// codes of 3, account numbers of 1 to 7, amounts of 1 to 10 digits, with
// nothing else in the cell (no spaces, separators or yen signs).
func ParseCSV(data []byte, m ColumnMap, cs Charset) *Summary {
	return parseCSV(data, m, cs, MaxRecords)
}

func parseCSV(data []byte, m ColumnMap, cs Charset, maxRows int) *Summary {
	s := newSummary(FormatCSV, data)
	if err := m.Validate(); err != nil {
		s.add(Problem{Code: ProblemColumnMap, Got: err.Error()})
		return s
	}
	s.TypeCode = m.Type
	text, ok := decodeCSV(data, cs)
	if !ok {
		s.add(Problem{Code: ProblemEncoding, Want: csName(cs)})
		return s
	}
	if strings.TrimSpace(text) == "" {
		s.add(Problem{Code: ProblemEmpty})
		return s
	}
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	last := m.lastColumn()
	for rows := 0; ; rows++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			line := 0
			if errors.As(err, &pe) {
				line, err = pe.Line, pe.Err
			}
			s.add(Problem{Code: ProblemCSV, Record: line, Got: err.Error(), row: true})
			break
		}
		if rows == m.HeaderRows+maxRows {
			s.add(Problem{Code: ProblemTooManyRecords, Want: strconv.Itoa(maxRows)})
			break
		}
		if rows < m.HeaderRows {
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < last {
			s.add(Problem{Code: ProblemColumns, Record: line, Want: strconv.Itoa(last), Got: strconv.Itoa(len(rec)), row: true})
			continue
		}
		s.csvRow(line, rec, m)
	}
	if len(s.Transfers) == 0 {
		s.add(Problem{Code: ProblemNoTransfers})
	}
	return s
}

func csName(cs Charset) string {
	if cs == ShiftJIS {
		return "Shift_JIS"
	}
	return "UTF-8"
}

// decodeCSV returns the file as UTF-8, or false if it is not valid in cs.
func decodeCSV(data []byte, cs Charset) (string, bool) {
	if cs == ShiftJIS {
		out, err := japanese.ShiftJIS.NewDecoder().Bytes(data)
		if err != nil || bytes.ContainsRune(out, utf8.RuneError) {
			return "", false
		}
		return string(out), true
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	return string(data), utf8.Valid(data)
}

// csvRow reads one transfer.
func (s *Summary) csvRow(line int, rec []string, m ColumnMap) {
	cell := func(col int) string {
		if col == 0 {
			return ""
		}
		return rec[col-1]
	}
	t := Transfer{
		Record: line,
		To: Account{
			BankCode: cell(m.BankCode), BankName: cell(m.BankName),
			BranchCode: cell(m.BranchCode), BranchName: cell(m.BranchName),
			Type: cell(m.AccountType), Number: cell(m.AccountNumber),
		},
		Recipient: cell(m.Recipient),
	}
	number := func(f FieldName, v string, minLen, maxLen int, want string) bool {
		if len(v) < minLen || len(v) > maxLen || !digits([]byte(v)) {
			s.add(Problem{Code: ProblemNotDigits, Record: line, Field: f, Want: want, Got: v, row: true})
			return false
		}
		return true
	}
	number(FieldBankCode, t.To.BankCode, 4, 4, "4")
	number(FieldBranchCode, t.To.BranchCode, 3, 3, "3")
	number(FieldAccountNumber, t.To.Number, 1, 7, "1–7")
	if m.AccountType != 0 && !accountType(t.To.Type) {
		s.add(Problem{Code: ProblemAccountType, Record: line, Field: FieldAccountType, Got: t.To.Type, row: true})
	}
	for _, f := range []struct {
		name FieldName
		v    string
	}{{FieldBankName, t.To.BankName}, {FieldBranchName, t.To.BranchName}, {FieldRecipient, t.Recipient}} {
		if r, bad := unshowable(f.v); bad {
			s.add(Problem{Code: ProblemCharset, Record: line, Field: f.name, Got: fmt.Sprintf("U+%04X", r), row: true})
		}
	}
	if strings.TrimSpace(t.Recipient) == "" {
		s.add(Problem{Code: ProblemBlank, Record: line, Field: FieldRecipient, row: true})
	}
	if a := cell(m.Amount); number(FieldAmount, a, 1, 10, "1–10") {
		if t.Amount, _ = strconv.ParseInt(a, 10, 64); t.Amount == 0 {
			s.add(Problem{Code: ProblemZeroAmount, Record: line, Field: FieldAmount, row: true})
		}
	}
	s.Transfers = append(s.Transfers, t)
	s.Total += t.Amount
}

// unshowable returns the first character of v that a page cannot show as it
// is: controls, format characters (bidi overrides, zero-width ones),
// private use, line and paragraph separators.
func unshowable(v string) (rune, bool) {
	for _, r := range v {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Co, unicode.Zl, unicode.Zp) {
			return r, true
		}
	}
	return 0, false
}
