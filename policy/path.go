package policy

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// NormalisePath returns the path as a lenient legacy backend reads it: every
// layer of percent-encoding removed (also %uXXXX and overlong UTF-8, which old
// IIS and Java decoders accepted), backslashes as slashes, ";" path parameters
// cut from each segment, repeated slashes collapsed, "." and ".." resolved
// (never above the root), surrounding whitespace and trailing dots trimmed from
// each segment (Windows drops them), the path cut at the first NUL (Java file
// APIs stop there) or decoded "?" or "#" (a proxy that decodes before it
// forwards turns the rest into a query or fragment, as in Apache httpd
// CVE-2024-38474), and letters folded to lower case (including the non-ASCII
// letters that Java and .NET case-insensitive comparison equate with ASCII
// ones, such as "ſ" and the Kelvin sign).
//
// The result starts with "/", has no trailing slash (except for the root
// itself) and is idempotent. Matching also tries a few stricter readings —
// decoding once or not at all before looking for separators, not cutting the
// path — since some backends read paths so; this one is what the gateway logs.
func NormalisePath(escaped string) string {
	return "/" + strings.Join(readPath(escaped, -1, true), "/")
}

// maxFastSegments bounds the segments the allocation-free path of Watches
// handles; longer paths take the general, allocating path.
const maxFastSegments = 32

// splitClean splits a path that every reading leaves unchanged except for
// letter case and ";" path parameters, so that it can be matched without
// building any string: cookie-less Java sessions put ";jsessionid=" in every
// URL. It reports false for anything that needs decoding or structural
// normalisation: '%', '\\', '?', '#', control characters, spaces, non-ASCII
// bytes, empty segments (other than one trailing slash), "." and ".."
// segments and trailing dots.
func splitClean(path string, segs *[maxFastSegments]string) (int, bool) {
	if path == "" || path[0] != '/' {
		return 0, false
	}
	n := 0
	start, end := 1, -1 // end: where a ";" cuts the current segment
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			if c != '/' {
				if c <= ' ' || c >= 0x7f || c == '%' || c == '\\' || c == '?' || c == '#' {
					return 0, false
				}
				if c == ';' && end < 0 {
					end = i
				}
				continue
			}
		}
		if end < 0 {
			end = i
		}
		seg := path[start:end]
		switch {
		case seg == "" && end == i && i == len(path):
			// One trailing slash.
		case seg == "" || seg[len(seg)-1] == '.' || n == maxFastSegments:
			// Also rejects "." and "..".
			return 0, false
		default:
			segs[n] = seg
			n++
		}
		start, end = i+1, -1
	}
	return n, true
}

// readings returns the distinct ways a backend may split and decode an
// escaped path, each as a list of folded segments. Servers differ in how many
// times they percent-decode before they look for separators and dot segments
// (Tomcat once, IIS and some filters until nothing changes, a strict router
// not at all) and in whether they stop at a NUL, "?" or "#". A request is
// protected if any reading matches, so each stricter reading keeps as literal
// segment text what a more lenient one would use as structure: "%2e%2e" stays
// a segment named ".." and "%3b" stays part of the segment, as Spring reads
// them.
func readings(escaped string) [][]string {
	rounds := []int{-1}
	if strings.IndexByte(escaped, '%') >= 0 {
		rounds = append(rounds, 0, 1)
	}
	var out [][]string
	seen := make(map[string]bool)
	for _, r := range rounds {
		for _, truncate := range []bool{true, false} {
			segs := readPath(escaped, r, truncate)
			key := strings.Join(segs, "/")
			if !seen[key] {
				seen[key] = true
				out = append(out, segs)
			}
		}
	}
	return out
}

// readPath reads escaped after rounds rounds of percent-decoding (-1: until
// nothing changes) as a list of segments; whatever encoding is left is decoded
// inside each segment afterwards, where it can no longer act as structure.
// With truncate the path ends at the first byte of truncateAt.
func readPath(escaped string, rounds int, truncate bool) []string {
	s := escaped
	if rounds < 0 {
		s = decodeAll(s)
	}
	for range rounds {
		s, _ = decodeOnce(s)
	}
	if truncate {
		if i := strings.IndexAny(s, truncateAt); i >= 0 {
			s = s[:i]
		}
	}
	var segs []string
	for raw := range strings.FieldsFuncSeq(s, isSeparator) {
		seg := trimSegment(raw)
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	for i := 0; i < len(segs); i++ {
		seg := decodeAll(segs[i])
		if truncate {
			if j := strings.IndexAny(seg, truncateAt); j >= 0 {
				segs = segs[:i+1]
				seg = trimSegment(seg[:j])
				if seg == "" {
					segs = segs[:i]
					break
				}
			}
		}
		segs[i] = foldCase(seg)
	}
	return segs
}

// truncateAt are the bytes where some backend stops reading a decoded path.
const truncateAt = "\x00?#"

func isSeparator(r rune) bool { return r == '/' || r == '\\' }

// trimSegment cuts a ";" path parameter (the servlet spec strips them, so
// "..;" is ".." to Tomcat) and the whitespace and trailing dots that Windows
// and trimming routers ignore. "." and ".." survive so the caller can resolve
// them.
func trimSegment(seg string) string {
	if i := strings.IndexByte(seg, ';'); i >= 0 {
		seg = seg[:i]
	}
	seg = strings.TrimFunc(seg, isSpace)
	if seg == "." || seg == ".." {
		return seg
	}
	return strings.TrimRightFunc(seg, func(r rune) bool { return r == '.' || isSpace(r) })
}

// isSpace is Java's String.trim() notion of whitespace: every control
// character and the space.
func isSpace(r rune) bool { return r <= ' ' }

// Unescape decodes a path until nothing changes (%XX, %uXXXX and overlong
// UTF-8), as the most lenient backends read it. The gateway uses it to find
// a session ID hidden under any depth of encoding.
func Unescape(escaped string) string { return decodeAll(escaped) }

// decodeAll decodes until nothing changes, with the escapes of decodeOnce.
// Repeating decodeOnce would take quadratic time on "%252525…41", a cheap
// denial of service; instead each byte is appended to an output that holds no
// escape, and any escape the byte completes is decoded at once. Escapes never
// overlap, so the order of decoding does not change the result.
func decodeAll(s string) string {
	if strings.IndexByte(s, '%') < 0 && !hasOverlong(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, s[i])
		b = decodeTail(b)
	}
	return string(b)
}

// decodeTail decodes escapes that end at the last byte of b, repeatedly.
func decodeTail(b []byte) []byte {
	for {
		n := len(b)
		switch {
		case n >= 3 && b[n-3] == '%' && isHex(b[n-2]) && isHex(b[n-1]):
			b = append(b[:n-3], unhex(b[n-2])<<4|unhex(b[n-1]))
		case n >= 6 && b[n-6] == '%' && isUEscape(string(b[n-5:])):
			// A multi-byte result cannot complete another escape: its lead
			// byte is neither hex nor 0xc0, 0xc1 or 0xe0 followed by 0x80.
			b = utf8.AppendRune(b[:n-6], unhexU(string(b[n-4:])))
		case n >= 2 && isOverlong2(b[n-2], b[n-1]):
			b = append(b[:n-2], overlongValue(b[n-2], b[n-1]))
		case n >= 3 && isOverlong3(b[n-3], b[n-2], b[n-1]):
			b = append(b[:n-3], overlongValue(b[n-2], b[n-1]))
		default:
			return b
		}
	}
}

// decodeOnce undoes one layer of encoding the way the most lenient decoders
// do: %XX, IIS's %uXXXX, and overlong UTF-8 forms of ASCII characters (such as
// %c0%af for "/", the IIS "unicode" traversal). Invalid escapes stay literal.
// Every change shortens the string, so repeating it terminates.
func decodeOnce(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && !hasOverlong(s) {
		return s, false
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
				i += 2
				continue
			}
			if i+5 < len(s) && isUEscape(s[i+1:i+6]) {
				b = utf8.AppendRune(b, unhexU(s[i+2:i+6]))
				i += 5
				continue
			}
		}
		if n, a := overlong(s[i:]); n > 0 {
			b = append(b, a)
			i += n - 1
			continue
		}
		b = append(b, c)
	}
	d := string(b)
	return d, d != s
}

func hasOverlong(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0xc0 || s[i] == 0xc1 || s[i] == 0xe0 {
			if n, _ := overlong(s[i:]); n > 0 {
				return true
			}
		}
	}
	return false
}

// overlong reports the length of an overlong two- or three-byte UTF-8 encoding
// of an ASCII character at the start of s, and that character.
func overlong(s string) (int, byte) {
	switch {
	case len(s) >= 2 && isOverlong2(s[0], s[1]):
		return 2, overlongValue(s[0], s[1])
	case len(s) >= 3 && isOverlong3(s[0], s[1], s[2]):
		return 3, overlongValue(s[1], s[2])
	}
	return 0, 0
}

func isOverlong2(c0, c1 byte) bool { return (c0 == 0xc0 || c0 == 0xc1) && isCont(c1) }

func isOverlong3(c0, c1, c2 byte) bool {
	return c0 == 0xe0 && (c1 == 0x80 || c1 == 0x81) && isCont(c2)
}

// overlongValue is the ASCII character encoded by an overlong sequence
// ending in c1, c2.
func overlongValue(c1, c2 byte) byte { return (c1&0x01)<<6 | c2&0x3f }

func isCont(c byte) bool { return c&0xc0 == 0x80 }

// isUEscape reports whether s is the "uXXXX" of IIS's %uXXXX escape.
func isUEscape(s string) bool {
	return len(s) == 5 && (s[0] == 'u' || s[0] == 'U') &&
		isHex(s[1]) && isHex(s[2]) && isHex(s[3]) && isHex(s[4])
}

// unhexU decodes the four hex digits of a %uXXXX escape.
func unhexU(s string) rune {
	return rune(unhex(s[0]))<<12 | rune(unhex(s[1]))<<8 | rune(unhex(s[2]))<<4 | rune(unhex(s[3]))
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// foldCase lowers letters the way a case-insensitive backend compares them.
// Java's equalsIgnoreCase and .NET's OrdinalIgnoreCase compare upper- and
// lower-case forms, so "ſ" (upper case "S"), "ı" (upper case "I"), "İ" and the
// Kelvin sign (lower case "i" and "k") equal ASCII letters and must fold to
// them. Bytes that are not UTF-8 are kept.
func foldCase(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii {
		if !upper {
			return s
		}
		return strings.ToLower(s)
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[i])
			i++
			continue
		}
		b = utf8.AppendRune(b, foldRune(r))
		i += n
	}
	return string(b)
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	if u := unicode.ToUpper(r); u < utf8.RuneSelf {
		return unicode.ToLower(u)
	}
	return unicode.ToLower(r)
}

// hasUpperASCII reports whether s has an ASCII capital, the only kind a
// segment that passed splitClean can have.
func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
