package session

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// CookiePiece is one name=value pair of a Cookie header, as the most
// lenient server splits it.
type CookiePiece struct {
	Name, Value string
	// Strict says the pair is a plain RFC 6265 cookie: a token name, "="
	// with no whitespace around it, and a value of cookie-octets only (no
	// quotes, spaces, tabs, commas or backslashes). Every server reads a
	// strict pair the same way.
	Strict bool
}

// CookiePieces splits every Cookie line of h on ";" and "," and trims
// spaces and tabs, which is what the most lenient servers do (Tomcat's
// RFC 6265 parser reads `JSESSIONID="Y; JSESSIONID=X` as the session "Y",
// where Go's parser skips the quoted value and sees only X; RFC 2109
// servers split on ","). A piece that any server could read as a cookie is
// returned, strict or not, so a caller can count what a server might see.
func CookiePieces(h http.Header) []CookiePiece {
	var out []CookiePiece
	for _, line := range h.Values("Cookie") {
		for piece := range strings.FieldsFuncSeq(line, func(r rune) bool { return r == ';' || r == ',' }) {
			piece = strings.TrimLeft(piece, " \t")
			name, value, _ := strings.Cut(piece, "=")
			p := CookiePiece{Name: strings.TrimRight(name, " \t"), Value: strings.Trim(value, " \t")}
			if p.Name == "" {
				continue
			}
			p.Strict = httpguts.ValidHeaderFieldName(name) && strings.Contains(piece, "=") && isCookieValue(value)
			out = append(out, p)
		}
	}
	return out
}

// SessionCookies returns the values of every piece that a server could
// read as the session cookie called name (letter case ignored, as some
// containers do), and whether there is exactly one and it is strict: only
// then do the gateway and the bank certainly read the same session.
func SessionCookies(h http.Header, name string) (values []string, one bool) {
	strict := 0
	for _, p := range CookiePieces(h) {
		if !strings.EqualFold(strings.TrimLeft(p.Name, "$"), name) {
			continue
		}
		values = append(values, strings.Trim(p.Value, `"`))
		if p.Strict && p.Name == name && p.Value != "" {
			strict++
		}
	}
	return values, len(values) == 1 && strict == 1
}

// StrictCookieLine rebuilds a Cookie header from the strict pieces of h,
// leaving out drop: what a released request carries, so the bank reads
// exactly the cookies the gateway read.
func StrictCookieLine(h http.Header, drop string) string {
	var kept []string
	for _, p := range CookiePieces(h) {
		if p.Strict && p.Name != drop {
			kept = append(kept, p.Name+"="+p.Value)
		}
	}
	return strings.Join(kept, "; ")
}

// isCookieValue reports whether s holds only RFC 6265 cookie-octets.
func isCookieValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
