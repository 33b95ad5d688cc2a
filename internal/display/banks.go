package display

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
)

// BankTable names 金融機関コード and 支店コード, from a table the operator
// supplies (the bank's own master, or the public code list). A nil table
// names nothing.
type BankTable struct {
	banks    map[string]string // "0001" → みずほ銀行
	branches map[string]string // "0001" + "100" → 本店
}

// Limits of a bank table: the full Japanese list has some 30,000 branches.
const (
	maxTableBytes = 16 << 20
	maxTableRows  = 200_000
)

// LoadBankTable reads a CSV table of bank and branch codes, one per line:
//
//	bank_code,branch_code,bank_name,branch_name
//	0001,,みずほ銀行,
//	0001,100,みずほ銀行,本店
//
// A line without a branch (empty branch_code and branch_name, or only three
// columns) names the bank alone. A first line naming the columns
// (bank_code or 金融機関コード first) is skipped. The file is UTF-8, with or
// without a byte-order mark, or else Shift_JIS (as Excel saves it). Bank
// codes are 4 digits, branch codes 3; names are not empty and hold no
// control or invisible characters. Any line that breaks these rules, a
// branch listed twice, or a bank given two names fails the whole table:
// it is configuration, and a wrong name on a confirm page misleads.
func LoadBankTable(r io.Reader) (*BankTable, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTableBytes+1))
	if err != nil {
		return nil, fmt.Errorf("bank table: %w", err)
	}
	if len(data) > maxTableBytes {
		return nil, fmt.Errorf("bank table: larger than %d MiB", maxTableBytes>>20)
	}
	text, err := decodeTable(data)
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(strings.NewReader(text))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	t := &BankTable{banks: map[string]string{}, branches: map[string]string{}}
	for row := 0; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bank table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if row >= maxTableRows {
			return nil, fmt.Errorf("bank table: more than %d lines", maxTableRows)
		}
		if row == 0 && (rec[0] == "bank_code" || rec[0] == "金融機関コード") {
			continue
		}
		if err := t.add(rec); err != nil {
			return nil, fmt.Errorf("bank table line %d: %w", line, err)
		}
	}
	if len(t.banks) == 0 {
		return nil, errors.New("bank table: no banks")
	}
	return t, nil
}

// decodeTable returns the table as UTF-8 text.
func decodeTable(data []byte) (string, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if utf8.Valid(data) {
		return string(data), nil
	}
	out, err := japanese.ShiftJIS.NewDecoder().Bytes(data)
	if err != nil || bytes.ContainsRune(out, utf8.RuneError) {
		return "", errors.New("bank table: neither UTF-8 nor Shift_JIS")
	}
	return string(out), nil
}

// add adds one line of the table.
func (t *BankTable) add(rec []string) error {
	if len(rec) != 3 && len(rec) != 4 {
		return fmt.Errorf("%d columns (want bank_code,branch_code,bank_name,branch_name)", len(rec))
	}
	bank, branch, bankName, branchName := rec[0], rec[1], rec[2], ""
	if len(rec) == 4 {
		branchName = rec[3]
	}
	if len(bank) != 4 || !allDigits(bank) {
		return fmt.Errorf("bank code %q is not 4 digits", bank)
	}
	if err := checkName(bankName); err != nil {
		return fmt.Errorf("bank name: %w", err)
	}
	if prev, ok := t.banks[bank]; ok && prev != bankName {
		return fmt.Errorf("bank %s is named both %q and %q", bank, prev, bankName)
	}
	t.banks[bank] = bankName
	if branch == "" && branchName == "" {
		return nil
	}
	if len(branch) != 3 || !allDigits(branch) {
		return fmt.Errorf("branch code %q is not 3 digits", branch)
	}
	if err := checkName(branchName); err != nil {
		return fmt.Errorf("branch name: %w", err)
	}
	if _, ok := t.branches[bank+branch]; ok {
		return fmt.Errorf("branch %s-%s is listed twice", bank, branch)
	}
	t.branches[bank+branch] = branchName
	return nil
}

// checkName refuses names a page could not show as they are.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.TrimSpace(s) != s {
		return errors.New("spaces around it")
	}
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) ||
			unicode.Is(unicode.Co, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return fmt.Errorf("character U+%04X cannot be shown", r)
		}
	}
	return nil
}

// BankName returns the name of a 金融機関コード.
func (t *BankTable) BankName(code string) (string, bool) {
	if t == nil {
		return "", false
	}
	name, ok := t.banks[code]
	return name, ok
}

// BranchName returns the name of a 支店コード of a bank.
func (t *BankTable) BranchName(bank, branch string) (string, bool) {
	if t == nil || len(bank) != 4 || len(branch) != 3 {
		return "", false
	}
	name, ok := t.branches[bank+branch]
	return name, ok
}

// named formats a code with its name: みずほ銀行（0001） in Japanese,
// みずほ銀行 (0001) in English (the table's names are Japanese).
func named(kind Kind, name, code string, lang Lang) Value {
	return Value{Text: name + lang.pick("（"+code+"）", " ("+code+")"), Kind: kind}
}

// Bank formats a 金融機関コード with its name. A code the table does not
// hold is shown raw, with a doubt.
func (t *BankTable) Bank(code string, lang Lang) Value {
	if t == nil {
		return doubtful(Bank, code, lang, "金融機関名の一覧が設定されていません", "no bank table is configured")
	}
	if name, ok := t.BankName(code); ok {
		return named(Bank, name, code, lang)
	}
	return doubtful(Bank, code, lang, "金融機関コードが一覧にありません", "the bank code is not in the bank table")
}

// Branch formats a 支店コード of the bank whose code is bank. A branch the
// table does not hold is shown raw, with a doubt.
func (t *BankTable) Branch(bank, branch string, lang Lang) Value {
	if t == nil {
		return doubtful(Branch, branch, lang, "金融機関名の一覧が設定されていません", "no bank table is configured")
	}
	if name, ok := t.BranchName(bank, branch); ok {
		return named(Branch, name, branch, lang)
	}
	return doubtful(Branch, branch, lang, "支店コードが一覧にありません", "the branch code is not in the bank table")
}
