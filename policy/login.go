package policy

import (
	"errors"
	"slices"
	"strings"
)

// FixedPath is one literal path of the bank's site, such as its login or
// logout path, compared with request paths under every reading the policy
// makes of them: every decode depth, letter case (with the non-ASCII letters
// Java and .NET equate with ASCII ones), ";" parameters, repeated slashes,
// dot segments, trailing slashes, dots and whitespace. A request path matches
// if any reading of it is the path: the gateway must treat as the login every
// request some backend reads as the login.
type FixedPath struct {
	segs []string
}

// CompileFixedPath reads p as the bank reads it. p must start with "/" and
// has no wildcards.
func CompileFixedPath(p string) (*FixedPath, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("otpgate: a path must start with /")
	}
	if strings.Contains(p, "*") {
		return nil, errors.New("otpgate: a login or logout path is one page; wildcards are not allowed")
	}
	return &FixedPath{segs: readPath(p, -1, true)}, nil
}

// Matches reports whether some reading of the escaped request path is p.
func (p *FixedPath) Matches(escaped string) bool {
	var segs [maxFastSegments]string
	if n, ok := splitClean(escaped, &segs); ok {
		if n != len(p.segs) {
			return false
		}
		for i, s := range segs[:n] {
			// A clean segment is ASCII, so lower-casing it is its fold.
			if s != p.segs[i] && strings.ToLower(s) != p.segs[i] {
				return false
			}
		}
		return true
	}
	for _, rd := range readings(escaped) {
		if slices.Equal(rd, p.segs) {
			return true
		}
	}
	return false
}

// String is the path as the gateway reads it.
func (p *FixedPath) String() string { return "/" + strings.Join(p.segs, "/") }

// FoldCase lowers letters the way the policy compares paths: as Java's
// equalsIgnoreCase and .NET's OrdinalIgnoreCase equate them, so "ſ" is "s"
// and the Kelvin sign is "k". Login field names are compared so too.
func FoldCase(s string) string { return foldCase(s) }
