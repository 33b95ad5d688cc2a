package zengin

import (
	"strings"
	"unicode/utf8"
)

// JIS8 is JIS X 0201 in eight bits: its Roman half (0x20–0x7E, ASCII but
// for 0x5C YEN SIGN and 0x7E OVERLINE) and its katakana half (0xA1–0xDF,
// U+FF61–U+FF9F in order). A Zengin record holds nothing else; Shift_JIS
// shares these single bytes, and its other bytes (0x80–0xA0, 0xE0–0xFF
// lead two-byte kanji) and control characters are not in a record.

// halfWidthKana maps JIS X 0201 katakana to Unicode.
const halfWidthKana = 0xFF61 - 0xA1

// badByte returns the index of the first byte of rec that is not a JIS8
// graphic character or space, or -1.
func badByte(rec []byte) int {
	for i, c := range rec {
		if !(c >= 0x20 && c <= 0x7E) && !(c >= 0xA1 && c <= 0xDF) {
			return i
		}
	}
	return -1
}

// decode converts JIS8 bytes to Unicode. A byte outside JIS8 (already
// reported by badByte) becomes U+FFFD: the page shows that something is
// there, and the problem says what.
func decode(b []byte) string {
	var s strings.Builder
	s.Grow(len(b))
	for _, c := range b {
		switch {
		case c == 0x5C:
			s.WriteRune('¥')
		case c == 0x7E:
			s.WriteRune('‾')
		case c >= 0x20 && c < 0x7F:
			s.WriteByte(c)
		case c >= 0xA1 && c <= 0xDF:
			s.WriteRune(rune(c) + halfWidthKana)
		default:
			s.WriteRune(utf8.RuneError)
		}
	}
	return s.String()
}

// decodeName decodes a C field: left-aligned and filled with spaces, which
// are not part of the name.
func decodeName(b []byte) string {
	end := len(b)
	for end > 0 && b[end-1] == ' ' {
		end--
	}
	return decode(b[:end])
}
