package challenge

import (
	"strings"

	"github.com/otpgate/otpgate/policy"
)

// sessionRedacted replaces a session ID parameter in what is logged.
const sessionRedacted = "jsessionid=REDACTED"

// redactedAs is what replaces a parameter named like the session cookie
// name: the name, which is configuration, not a secret.
func redactedAs(name string) string { return name + "=REDACTED" }

// RedactSessionIDs returns a request URI (escaped path and query) fit for a
// log or the audit trail: every path segment and every query parameter that
// names a jsessionid under any reading (any letter case, any depth of
// percent-encoding, overlong UTF-8) loses everything from that name on. A
// session ID in a URL is as good as the session cookie (SECURITY.md 22);
// the released request itself keeps its URI byte for byte. cookie, when
// not empty, is the bank's session cookie name: Tomcat reads a session ID
// from a path parameter of that name too, so such parameters, read the
// same way, are redacted as well.
func RedactSessionIDs(uri, cookie string) string {
	path, query, hasQuery := strings.Cut(uri, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case namesSession(s):
			segs[i] = s[:sessionCut(s)] + ";" + sessionRedacted
		case namesParam(s, cookie, ";"):
			segs[i] = s[:sessionCut(s)] + ";" + redactedAs(cookie)
		}
	}
	out := strings.Join(segs, "/")
	if !hasQuery {
		return out
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		switch {
		case namesSession(p):
			params[i] = sessionRedacted
		case namesParam("&"+p, cookie, "&"):
			params[i] = redactedAs(cookie)
		}
	}
	return out + "?" + strings.Join(params, "&")
}

// LogRequest is the operation's method and URI as the audit trail and the
// logs show them: without session IDs.
func (op *Operation) LogRequest() string {
	return op.Method + " " + RedactSessionIDs(op.RequestURI, op.SessionCookie)
}

// namesParam reports whether s, read as the most lenient backend reads it
// (percent-decoded until stable), has a parameter after sep named name,
// in any letter case and with spaces around the name.
func namesParam(s, name, sep string) bool {
	if name == "" {
		return false
	}
	params := strings.Split(policy.Unescape(s), sep)
	for _, p := range params[1:] {
		n, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(n), name) {
			return true
		}
	}
	return false
}

// namesSession reports whether s, read as the most lenient backend reads
// it, contains a jsessionid.
func namesSession(s string) bool {
	return strings.Contains(strings.ToLower(policy.Unescape(s)), "jsessionid")
}

// sessionCut is where the redaction of segment s starts: at its first ';',
// '%' or non-ASCII byte, or where "jsessionid" is written out in ASCII. One
// of them comes no later than the name's first letter, since a letter that
// is not written out is hidden by an escape or an overlong byte sequence.
func sessionCut(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == ';' || s[i] == '%' || s[i] >= 0x80 || hasFoldPrefix(s[i:], "jsessionid") {
			return i
		}
	}
	return len(s)
}

// hasFoldPrefix reports whether s begins with the lower-case ASCII word,
// in any letter case.
func hasFoldPrefix(s, word string) bool {
	if len(s) < len(word) {
		return false
	}
	for i := 0; i < len(word); i++ {
		if s[i]|0x20 != word[i] {
			return false
		}
	}
	return true
}
