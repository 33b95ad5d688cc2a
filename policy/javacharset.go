package policy

import (
	"fmt"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/unicode"
)

// javaCharsets are the charset labels a Java servlet container and Go's
// decoders read alike, apart from the byte sequences javaDisagrees finds.
// Other labels are refused: Java does not know "x-cp1252" or "macintosh"
// (and falls back to ISO-8859-1), and its GBK and Big5 tables differ from
// WHATWG's, so the confirm page would show text the bank does not read.
var javaCharsets = map[string]bool{
	"utf-8": true, "utf8": true, "us-ascii": true, "ascii": true,
	"iso-8859-1": true, "iso8859-1": true, "latin1": true,
	"windows-1252": true, "cp1252": true,
	"shift_jis": true, "shift-jis": true, "sjis": true, "x-sjis": true,
	"windows-31j": true, "ms932": true, "cp932": true, "csWindows31J": true,
	"euc-jp": true, "eucjp": true, "x-euc-jp": true,
}

// javaAgrees reports why a Java server could decode b, declared in the
// charset called name and decoded by Go with enc, into other text than
// Go does; nil if it cannot.
func javaAgrees(name string, enc encoding.Encoding, b []byte) error {
	label := strings.ToLower(strings.TrimSpace(name))
	if label != "" && !javaCharsets[label] && !javaCharsets[name] {
		return fmt.Errorf("in the charset %q, which Java servers read differently", name)
	}
	switch enc {
	case japanese.ShiftJIS:
		if i := sjisDisagrees(b, label); i >= 0 {
			return fmt.Errorf("holding a character that Java's %s maps differently (at byte %d: NEC/IBM extensions, user-defined area or the wave dash family)", name, i)
		}
	case japanese.EUCJP:
		if i := eucDisagrees(b); i >= 0 {
			return fmt.Errorf("holding a character that Java's %s maps differently (at byte %d: NEC/IBM extensions, JIS X 0212 or the wave dash family)", name, i)
		}
	case charmap.Windows1252:
		// Java's Cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined.
		for i, c := range b {
			if c == 0x81 || c == 0x8D || c == 0x8F || c == 0x90 || c == 0x9D {
				return fmt.Errorf("holding the byte 0x%02X (at %d), undefined in Java's windows-1252", c, i)
			}
		}
	case unicode.UTF8, charmap.ISO8859_1, nil:
	}
	return nil
}

// sjisDisagrees returns the offset of the first double-byte character in b
// that Java's strict Shift_JIS and Go's CP932-based decoder read
// differently, or -1. CP932 labels (windows-31j) agree with Go everywhere
// but in the user-defined area.
func sjisDisagrees(b []byte, label string) int {
	cp932 := label == "windows-31j" || label == "ms932" || label == "cp932" || label == "cswindows31j"
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c < 0x80 || 0xa1 <= c && c <= 0xdf:
			continue
		case i+1 >= len(b):
			return i
		}
		t := uint16(c)<<8 | uint16(b[i+1])
		switch {
		case 0xf0 <= c && c <= 0xf9: // user-defined area
			return i
		case cp932:
		case c == 0x87, 0xed <= c && c <= 0xee, 0xfa <= c: // NEC row 13, NEC-selected and IBM extensions
			return i
		case t == 0x8160 || t == 0x8161 || t == 0x817c || t == 0x8191 || t == 0x8192 || t == 0x81ca:
			// 〜‖−¢£¬: JIS in Java, fullwidth forms in CP932.
			return i
		}
		i++
	}
	return -1
}

// eucDisagrees is sjisDisagrees for EUC-JP.
func eucDisagrees(b []byte) int {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c < 0x80:
			continue
		case c == 0x8e: // half-width katakana
			i++
			continue
		case c == 0x8f: // JIS X 0212, mapped differently by eucJP-ms
			return i
		case i+1 >= len(b):
			return i
		}
		t := uint16(c)<<8 | uint16(b[i+1])
		switch {
		case c == 0xad, 0xf5 <= c: // NEC row 13, IBM extensions, user-defined
			return i
		case t == 0xa1c1 || t == 0xa1c2 || t == 0xa1dd || t == 0xa1f1 || t == 0xa1f2 || t == 0xa2cc:
			return i
		}
		i++
	}
	return -1
}
