package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// AmbiguousPathError says why CheckPath refused a request path. Its text is
// meant for the client: what was wrong and what to send instead.
type AmbiguousPathError struct {
	// Reason names what makes the path ambiguous, e.g. "encoded '/'".
	Reason string
	// Hint says what to send instead.
	Hint string
}

func (e *AmbiguousPathError) Error() string {
	return "the request path is ambiguous (" + e.Reason + "); " + e.Hint
}

const (
	hintUnencoded = "send it unencoded"
	hintResolved  = "send the path with dot segments resolved and without empty segments"
	hintPlain     = "send a plain path of letters, digits and - _ . ~ , = & : @ ! $ * ' ( )"
)

// CheckPath decides whether every backend reads the escaped request path
// (url.URL.EscapedPath(), exactly as it will be forwarded) as the same list of
// segments. Servers disagree on how many times they percent-decode (Tomcat
// once, IIS and some filters until nothing changes, a strict router not at
// all, a buggy filter exactly twice), on "\" as a separator, on ";" path
// parameters, on trimming whitespace, control characters and trailing dots
// (Windows), on overlong UTF-8 and %uXXXX, and on which non-ASCII letters
// equal ASCII ones. Instead of guessing each reading — a list of readings
// proves only the readings on it — CheckPath refuses every path on which any
// two of them could differ:
//
//   - a byte outside the unreserved and sub-delimiter characters of RFC 3986,
//     except "%" escapes and "/": no "\", space, control character, "+"
//     (form decoders read it as a space), raw non-ASCII, "#", or quotes;
//   - an escape that is not "%" and two hex digits (%uXXXX included);
//   - an escape of a character with meaning in a path or to a decoder:
//     "/", "\", ";", ".", "%" (double encoding), "?", "#", "+", space and
//     every control character;
//   - percent-encoded bytes that are not valid UTF-8 (overlong forms such as
//     %c0%af included), or non-ASCII characters that are spaces, format or
//     control characters, or that some server equates with ASCII (fullwidth
//     forms under NFKC, "ſ", "ı", "İ" and the Kelvin sign under case folding);
//   - an empty segment ("//", except one trailing slash), a segment made only
//     of dots, one ending in a dot, or one with "~" and a digit (IIS maps the
//     8.3 short name "TRANSF~1" to "transfer") — before or after its ";"
//     parameters.
//
// What is left reads the same at every decoding depth from one up: escapes of
// letters and digits decode to themselves and separators are never encoded.
// Browsers never send what is refused here, so ordinary traffic is unaffected.
// "*" alone (OPTIONS *) is accepted.
func CheckPath(escaped string) error {
	if escaped == "*" {
		return nil
	}
	if escaped == "" || escaped[0] != '/' {
		return &AmbiguousPathError{"a path that does not start with '/'", hintPlain}
	}
	for start := 1; start <= len(escaped); {
		end := strings.IndexByte(escaped[start:], '/')
		if end < 0 {
			end = len(escaped)
		} else {
			end += start
		}
		last := end == len(escaped)
		if err := checkSegment(escaped[start:end], last); err != nil {
			return err
		}
		start = end + 1
	}
	return nil
}

// checkSegment checks one segment between slashes, its ";" parameters
// included. last says it ends the path, where an empty segment is the one
// trailing slash.
func checkSegment(seg string, last bool) error {
	if seg == "" {
		if last {
			return nil
		}
		return &AmbiguousPathError{"an empty segment ('//')", hintResolved}
	}
	decoded, name, err := decodeSegment(seg)
	if err != nil {
		return err
	}
	if err := checkText(decoded); err != nil {
		return err
	}
	// A servlet container reads the name before ";", a router that keeps
	// parameters reads the whole segment; both must be an ordinary name.
	for _, s := range []string{decoded[:name], decoded} {
		switch {
		case s == "":
			return &AmbiguousPathError{"an empty segment before ';'", hintResolved}
		case strings.Trim(s, ".") == "":
			return &AmbiguousPathError{"a dot segment", hintResolved}
		case s[len(s)-1] == '.':
			return &AmbiguousPathError{"a segment ending in '.'", hintResolved}
		case hasShortName(s):
			return &AmbiguousPathError{"an 8.3 short name ('~1')", hintPlain}
		}
	}
	return nil
}

// decodeSegment checks the bytes and escapes of seg and decodes it once. name
// is the length of the decoded segment name, before the first ";". Without
// escapes nothing is allocated.
func decodeSegment(seg string) (decoded string, name int, err error) {
	name = -1
	var b []byte
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c == '%':
			if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
				return "", 0, &AmbiguousPathError{"an invalid percent-encoding", hintUnencoded}
			}
			d := unhex(seg[i+1])<<4 | unhex(seg[i+2])
			if reason := encodedReason(d); reason != "" {
				return "", 0, &AmbiguousPathError{reason, hintUnencoded}
			}
			if b == nil {
				b = append(make([]byte, 0, len(seg)), seg[:i]...)
			}
			b = append(b, d)
			i += 2
			continue
		case c == ';':
			if name < 0 {
				name = i
				if b != nil {
					name = len(b)
				}
			}
		case !isPathByte(c):
			return "", 0, &AmbiguousPathError{rawReason(c), hintPlain}
		}
		if b != nil {
			b = append(b, c)
		}
	}
	decoded = seg
	if b != nil {
		decoded = string(b)
	}
	if name < 0 {
		name = len(decoded)
	}
	return decoded, name, nil
}

// isPathByte reports whether c may appear unencoded: RFC 3986 unreserved
// characters, the sub-delimiters and "@", less "+" (a space to form
// decoders), ":" (NTFS reads "execute::$DATA" as "execute") and ";" (handled
// by the caller).
func isPathByte(c byte) bool { return pathBytes[c] }

var pathBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~!$&'()*,=@", byte(c)) >= 0
	}
	return t
}()

// encodedReason names why an escape of d is refused, or "" if it is not.
func encodedReason(d byte) string {
	switch d {
	case '/', '\\', ';', '.', '?', '#', '+', ':':
		return fmt.Sprintf("encoded '%c'", d)
	case '%':
		return "'%25' (double encoding)"
	case ' ':
		return "encoded space"
	}
	if d < 0x20 || d == 0x7f {
		return "encoded control character"
	}
	return ""
}

// hasShortName reports whether s has "~" followed by a digit.
func hasShortName(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '~' && '0' <= s[i+1] && s[i+1] <= '9' {
			return true
		}
	}
	return false
}

// rawReason names an unencoded byte that is refused.
func rawReason(c byte) string {
	switch {
	case c == '\\':
		return "backslash"
	case c == '+':
		return "'+', a space to form decoders"
	case c < 0x20 || c == 0x7f:
		return "control character"
	case c >= 0x80:
		return "unencoded non-ASCII byte"
	}
	return fmt.Sprintf("character '%c'", c)
}

// checkText refuses decoded segment text that is not UTF-8 or that holds a
// non-ASCII character some server reads as something else.
func checkText(b string) error {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return &AmbiguousPathError{"invalid or overlong UTF-8", hintUnencoded}
		}
		if reason := runeReason(r); reason != "" {
			return &AmbiguousPathError{reason, hintPlain}
		}
		i += n
	}
	return nil
}

// runeReason names why a non-ASCII character is refused, or "" if it is not.
func runeReason(r rune) string {
	switch {
	case unicode.IsSpace(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
		return fmt.Sprintf("the space character U+%04X", r)
	case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S):
		return fmt.Sprintf("the format or unassigned character U+%04X", r)
	case equatesASCII(r):
		return fmt.Sprintf("U+%04X, which some servers read as ASCII", r)
	}
	return ""
}

// equatesASCII reports whether some server could read r as an ASCII
// character: under compatibility normalisation (fullwidth "／", "．",
// "ｔ"), IIS's best-fit mapping (which follows NFKC for these), or Java's
// and .NET's case-insensitive comparison, which compares upper- and
// lower-case forms ("ſ", "ı", "İ", the Kelvin sign).
func equatesASCII(r rune) bool {
	if unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToLower(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	var buf [utf8.UTFMax]byte
	for _, c := range norm.NFKC.Bytes(buf[:utf8.EncodeRune(buf[:], r)]) {
		if c < utf8.RuneSelf {
			return true
		}
	}
	return false
}

// Exemptions are the path prefixes an operator lets through CheckPath, for
// legacy content whose names need what CheckPath refuses (a file name with
// an encoded space, say). A prefix never covers a protected path, the login
// or logout path or the gateway's own pages, and an exempted path still may
// not step out of its prefix under any reading.
type Exemptions struct {
	prefixes []string // each ends in "/"
}

// maxExemptDecodes bounds the decoding depths Covers tries; deeper encoding
// is not exempt.
const maxExemptDecodes = 8

// NewExemptions compiles patterns of the form "/static/**". They must not
// overlap a path that p protects or any of reserved (patterns in the syntax
// of Rule.Paths, such as the login path).
func NewExemptions(patterns []string, p *Policy, reserved ...string) (*Exemptions, error) {
	e := &Exemptions{}
	var protected []string
	if p != nil {
		for _, r := range p.rules {
			protected = append(protected, r.Paths...)
		}
	}
	protected = append(protected, reserved...)
	for _, pat := range patterns {
		prefix, ok := strings.CutSuffix(pat, "/**")
		if !ok || prefix == "" {
			return nil, fmt.Errorf("allow_ambiguous_paths %q: want a prefix ending in /**, such as /static/**", pat)
		}
		if err := CheckPath(prefix); err != nil || strings.ContainsAny(prefix, "%;*") {
			return nil, fmt.Errorf("allow_ambiguous_paths %q: the prefix must be a plain path without '%%', ';' or '*'", pat)
		}
		segs, err := compilePattern(prefix)
		if err != nil {
			return nil, fmt.Errorf("allow_ambiguous_paths %q: %w", pat, err)
		}
		for _, other := range protected {
			osegs, err := compilePattern(other)
			if err == nil && overlaps(segs, osegs) {
				return nil, fmt.Errorf("allow_ambiguous_paths %q covers %q, which the gateway protects; exempt a narrower prefix", pat, other)
			}
		}
		e.prefixes = append(e.prefixes, prefix+"/")
	}
	return e, nil
}

// overlaps reports whether a path under prefix could match pattern.
func overlaps(prefix, pattern []string) bool {
	for i, s := range prefix {
		if i >= len(pattern) {
			return false
		}
		switch pattern[i] {
		case "**":
			return true
		case "*":
		default:
			if pattern[i] != s {
				return false
			}
		}
	}
	return true
}

// Covers reports whether escaped lies under an exempt prefix under every
// reading: it starts with the prefix as sent, and no decoding depth,
// separator or trimming makes any segment a dot segment that could climb
// out of it.
func (e *Exemptions) Covers(escaped string) bool {
	if e == nil {
		return false
	}
	under := false
	for _, p := range e.prefixes {
		under = under || strings.HasPrefix(escaped, p)
	}
	if !under {
		return false
	}
	s := escaped
	for range maxExemptDecodes {
		if climbs(s) {
			return false
		}
		d, changed := decodeOnce(s)
		if !changed {
			return true
		}
		s = d
	}
	return false
}

// climbs reports whether some backend could read a dot segment in s.
func climbs(s string) bool {
	for seg := range strings.FieldsFuncSeq(s, isSeparator) {
		seg, _, _ = strings.Cut(seg, ";")
		seg = strings.TrimFunc(seg, func(r rune) bool { return isSpace(r) || unicode.IsSpace(r) })
		if seg != "" && strings.Trim(seg, ".") == "" {
			return true
		}
	}
	return false
}
