package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What you see is what you confirm.
//
// The confirm page is the customer's only view of a held operation: a
// value on it that the bank will not execute lets a man in the browser, or
// an attacker who has the customer's password and talks them into
// confirming, move money the customer never saw. So Classify says, in
// Match.Verdict, how exactly it read the request, and the gateway acts on
// it. The rule, by what the gateway found:
//
//   - Refused (400, with a message saying what to send instead): a body
//     the gateway cannot read the way the bank does. That is a body with no
//     Content-Type or of any type but application/x-www-form-urlencoded,
//     multipart/form-data and JSON (text/plain included: servlets read no
//     parameters from it, lenient handlers read it as a form, so no reading
//     is the bank's); a Content-Type that does not parse or comes twice; a
//     Content-Encoding; an unknown charset or bytes that are not valid in
//     the charset; a bad % escape, in the body or the query; multipart or
//     JSON that does not parse; a multipart part whose name a servlet and
//     the gateway could read differently (RFC 2231 "name*=" and
//     "filename*=", RFC 2047 encoded words, two Content-Disposition
//     headers, a disposition other than form-data, a repeated name or
//     filename, a backslash in a name, a directory in a file name, a
//     charset of its own other than the form's, a Content-Transfer-Encoding);
//     and a parameter name with control or format characters or surrounding
//     space, which C-string or trimming readers take for another name. No
//     browser form sends any of these: refusing them costs legitimate
//     customers nothing, while holding them would ask the customer to
//     confirm what nobody can show.
//   - Conflicting (held; the page says the details cannot be shown, and
//     shows none): a shown field with several different values — a
//     repeated form field, a field in both query and body, a duplicate JSON
//     key, a JSON array, the same name in another letter case. The body was
//     read, but the bank takes the first, the last or all of them,
//     depending on the server. Old forms do repeat fields, so the customer
//     may still go on, knowing that the details could not be shown.
//   - Escaped (held and shown, with a notice): a shown value holding
//     characters that display as something else or as nothing — bidi
//     overrides, isolates and marks (U+202A–202E, U+2066–2069, U+200E,
//     U+200F, U+061C), other format (Cf) and control (Cc) characters, line
//     and paragraph separators, private-use and unassigned code points,
//     default-ignorable fillers, non-ASCII decimal digits (fullwidth
//     "１", Arabic-Indic "٣", mathematical "𝟏") and combining marks on ASCII
//     characters. The value is exact, but it would display misleadingly;
//     these characters are written as \uXXXX (a backslash as \\), so the
//     customer sees each code point.
//   - Exact: everything else; the fields are shown as the bank reads them.
//
// A rule that needs nothing from the body (no params, no shown fields) is
// not refused for its body: nothing of it is shown.

// Verdict is how exactly Classify read a protected operation, and so what
// the gateway may show of it. The non-empty values are stable codes, kept
// with a held operation and given to API clients.
type Verdict string

const (
	// Exact: the shown fields are what the bank will read.
	Exact Verdict = ""
	// Escaped: the shown fields are what the bank will read, but some
	// value holds characters that display misleadingly; ShownField.Value
	// has them as \uXXXX escapes. Show the fields, and say so.
	Escaped Verdict = "escaped_characters"
	// Conflicting: a shown field has several values, and the bank may act
	// on any of them. The operation may be held, but none of its fields may
	// be shown as if the bank would execute them: the confirm page says that
	// the details cannot be shown.
	Conflicting Verdict = "conflicting_values"
	// Refused: the request cannot be read as the bank reads it. Answer 400
	// with Match.Err, a *Refusal whose message says what to send instead.
	Refused Verdict = "refused"
)

// A Refusal is why a protected operation is refused: its query or body
// cannot be read exactly as the bank reads it. The message is for the
// client: it starts with "otpgate: ", names what could not be read (a
// parameter name at most, never a value: values may be PINs) and says what
// to send instead.
type Refusal struct{ msg string }

func (e *Refusal) Error() string { return e.msg }

func refusef(format string, args ...any) *Refusal {
	return &Refusal{msg: "otpgate: " + fmt.Sprintf(format, args...)}
}

// ErrEscaped is reported in Match.Err when a shown value holds characters
// that were escaped for display.
var ErrEscaped = errors.New("shown field holds characters that display misleadingly")

// maxListed bounds the code points an escape error lists.
const maxListed = 8

// escapeShown writes the characters of s that display misleadingly as
// \uXXXX (\UXXXXXXXX above U+FFFF) and, if it escaped any, every backslash
// as \\, so that the escaped text reads back to exactly s. It returns s
// unchanged, and no code points, when nothing needed escaping.
func escapeShown(s string) (string, []rune) {
	clean := true
	prev := rune(-1)
	for _, r := range s {
		if misleading(r, prev < utf8.RuneSelf) {
			clean = false
			break
		}
		prev = r
	}
	if clean {
		return s, nil
	}
	var found []rune
	var b strings.Builder
	// asciiBefore: what is displayed before r ends in ASCII, or is nothing.
	// An escape is ASCII, so a mark after it would land on its last digit.
	asciiBefore := true
	for _, r := range s {
		switch {
		case misleading(r, asciiBefore):
			found = append(found, r)
			if r > 0xFFFF {
				fmt.Fprintf(&b, `\U%08X`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
			asciiBefore = true
			continue
		case r == '\\':
			b.WriteString(`\\`)
		default:
			b.WriteRune(r)
		}
		asciiBefore = r < utf8.RuneSelf
	}
	return b.String(), found
}

// misleading reports whether r displays as something it is not: invisibly,
// as a reordering of its neighbours, or as an ASCII digit it is not.
// asciiBefore says the text displayed before it ends in an ASCII character
// or is empty.
func misleading(r rune, asciiBefore bool) bool {
	switch {
	case r < utf8.RuneSelf:
		return r < 0x20 || r == 0x7f
	case unicode.In(r, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point):
		return true
	case unicode.Is(unicode.Nd, r):
		return true
	case unicode.Is(unicode.M, r):
		// A mark on an ASCII character (or on nothing) changes how a digit
		// or letter of an amount or account reads: "1\u0338", "0\u20E3".
		return asciiBefore
	}
	// Control, format (bidi controls among them), private-use and
	// unassigned code points: a font shows nothing or a box, or the text
	// around them is reordered.
	return !unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// codePoints lists runes as "U+202E, U+FF11", at most maxListed of them.
func codePoints(rs []rune) string {
	var b strings.Builder
	for i, r := range rs {
		if i == maxListed {
			fmt.Fprintf(&b, " and %d more", len(rs)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "U+%04X", r)
	}
	return b.String()
}

// badName reports why a parameter name cannot be trusted to be read as
// the same name by every backend, or "" if it can: a NUL ends it for a
// C-string reader, other control and format characters are dropped or kept
// depending on the server, and surrounding space is trimmed by some.
func badName(name string) string {
	if strings.TrimFunc(name, unicode.IsSpace) != name {
		return "surrounding space"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return fmt.Sprintf("character U+%04X", r)
		}
	}
	return ""
}
