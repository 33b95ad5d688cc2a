// Package display formats the values a confirm page shows the way a bank
// shows them: amounts as 1,500,000円 (¥1,500,000 in English), account types
// by name, dates as 2026年12月7日, codes in a box and bank or branch codes
// with their names.
//
// A value is formatted only when it reads exactly one way. Anything else is
// shown as it was received, with a Doubt saying why: the customer must never
// see a tidied-up amount that the bank would read differently ("1,500" and
// "１５００" are shown raw, not as 1,500円), so every parser here is strict
// and says what it accepts.
package display

import (
	"fmt"
	"strings"
)

// Lang is the language of a formatted value. Its values are those of the
// page language (pages.Lang), so a page's language converts with Lang(l).
// Anything but English is Japanese.
type Lang string

// The languages.
const (
	Japanese Lang = "ja"
	English  Lang = "en"
)

// en reports whether l is English.
func (l Lang) en() bool { return l == English }

// pick returns ja or en by language.
func (l Lang) pick(ja, en string) string {
	if l.en() {
		return en
	}
	return ja
}

// Kind is how a value is formatted and styled. The non-empty values are the
// names an operator gives a shown field ("show amount 金額 Amount yen"); a
// template styles a Value by its Kind (a Code in a monospace box).
type Kind string

// The kinds.
const (
	Plain   Kind = ""        // shown as it is
	Yen     Kind = "yen"     // amount in yen: 1,500,000円 / ¥1,500,000
	Account Kind = "account" // account type and number: 普通 1234567 / Ordinary 1234567
	Date    Kind = "date"    // 2026年12月7日 / 7 Dec 2026
	Code    Kind = "code"    // shown exactly, in a monospace box
	Bank    Kind = "bank"    // 金融機関コード with its name from the operator's table
	Branch  Kind = "branch"  // 支店コード with its name; needs the bank's code
)

// ParseKind reads a kind's name as an operator writes it in the
// configuration. The empty string is Plain.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Plain, Yen, Account, Date, Code, Bank, Branch:
		return k, nil
	}
	return Plain, fmt.Errorf("unknown display format %q (want yen, account, date, code, bank or branch)", s)
}

// Value is a formatted value.
type Value struct {
	// Text is what the page shows: the formatted value, or the value as it
	// was received when Doubt is set.
	Text string
	// Kind is the kind asked for, whether or not the value could be
	// formatted: a code stays in its box even when doubtful.
	Kind Kind
	// Doubt, when not empty, says in the value's language why Text is the
	// raw value rather than a formatted one. Pages show it next to the value.
	Doubt string
}

// Options are what Show needs beyond the raw value.
type Options struct {
	Lang Lang
	// Table names bank and branch codes (kinds Bank and Branch).
	Table *BankTable
	// BankCode is the 金融機関コード a Branch code belongs to, read by the
	// caller from another field of the same request.
	BankCode string
}

// Show formats raw as kind. It never fails: a value that cannot be
// formatted is returned raw with a Doubt.
func Show(kind Kind, raw string, o Options) Value {
	switch kind {
	case Yen:
		return FormatYen(raw, o.Lang)
	case Account:
		return FormatAccount(raw, o.Lang)
	case Date:
		return FormatDate(raw, o.Lang)
	case Code:
		return FormatCode(raw, o.Lang)
	case Bank:
		return o.Table.Bank(raw, o.Lang)
	case Branch:
		return o.Table.Branch(o.BankCode, raw, o.Lang)
	}
	return Value{Text: raw, Kind: Plain}
}

// doubtful returns raw as it was received, flagged with a reason.
func doubtful(kind Kind, raw string, lang Lang, ja, en string) Value {
	return Value{Text: raw, Kind: kind, Doubt: lang.pick(ja, en)}
}

// maxYenDigits bounds an amount: 15 digits are 999兆円, more than any
// transfer; a longer value is shown raw rather than grouped into a number
// nobody can read at a glance.
const maxYenDigits = 15

// FormatYen formats an amount in yen: "1500000" is 1,500,000円 in Japanese
// and ¥1,500,000 in English. Only plain non-negative integers are accepted:
// 1 to 15 ASCII digits, without sign, spaces, separators, decimals,
// fullwidth digits or leading zeros ("0" itself is fine). Leading zeros are
// refused because readers disagree on them (some take "010" as octal 8).
func FormatYen(raw string, lang Lang) Value {
	switch {
	case raw == "":
		return doubtful(Yen, raw, lang, "金額が空です", "the amount is empty")
	case !allDigits(raw):
		return doubtful(Yen, raw, lang, "金額が半角数字だけではありません", "the amount is not plain digits")
	case len(raw) > 1 && raw[0] == '0':
		return doubtful(Yen, raw, lang, "金額の先頭に0があります", "the amount has leading zeros")
	case len(raw) > maxYenDigits:
		return doubtful(Yen, raw, lang, "金額の桁数が多すぎます", "the amount has too many digits")
	}
	g := group(raw)
	if lang.en() {
		return Value{Text: "¥" + g, Kind: Yen}
	}
	return Value{Text: g + "円", Kind: Yen}
}

// group puts a comma between every three digits from the right.
func group(digits string) string {
	var b strings.Builder
	for i := 0; i < len(digits); i++ {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(digits[i])
	}
	return b.String()
}

// allDigits reports whether s is not empty and holds only ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatCode shows a code (a reference number, a customer number) exactly
// as it is, for a monospace box. Spaces around it would be invisible in the
// box, so they make it doubtful, as does an empty code.
func FormatCode(raw string, lang Lang) Value {
	switch {
	case raw == "":
		return doubtful(Code, raw, lang, "コードが空です", "the code is empty")
	case strings.TrimSpace(raw) != raw:
		return doubtful(Code, raw, lang, "コードの前後に空白があります", "the code has spaces around it")
	}
	return Value{Text: raw, Kind: Code}
}
