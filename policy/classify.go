package policy

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/otpgate/otpgate/internal/zengin"
)

// Request is a Caddy-free view of an HTTP request.
type Request struct {
	// Method is the request method as received.
	Method string
	// Path is the escaped path as it will be forwarded
	// (url.URL.EscapedPath()).
	Path string
	// RawQuery is the query string without the "?".
	RawQuery string
	// Header holds the request headers; policy reads the method-override
	// headers, Content-Type and Content-Encoding.
	Header http.Header
	// NoBody says the request certainly has no body
	// (http.Request.ContentLength == 0). Without it, Watches assumes a body
	// could carry a "_method" field and watches every method on a watched
	// path.
	NoBody bool
}

// Match is a protected operation found by Classify.
type Match struct {
	// Rule is the matching rule, with defaults filled in. Do not modify it.
	Rule *Rule
	// Kind is the rule's kind.
	Kind Kind
	// Fields holds one entry per Rule.Show, in order; for a Refused match
	// only their names and labels.
	Fields []ShownField
	// Verdict says how exactly the request was read, and so whether the
	// gateway refuses it, holds it without showing its fields, or shows
	// them (escaped): see Verdict and the rule in wysiwyc.go.
	Verdict Verdict
	// Doubt says the Verdict is not Exact. The request is protected anyway.
	Doubt bool
	// Err says what caused the doubt: a *Refusal for a Refused match; for
	// the others ErrConflictingValues and ErrEscaped, joined. It names
	// fields and code points, never values.
	Err error
	// File summarises the transfer file of a rule with ShowFile; nil when
	// the rule has none or no file could be read (FileErr says why).
	File    *zengin.Summary
	FileErr error
}

// ShownField is a field to display on the confirm page.
type ShownField struct {
	Name    string
	Label   string
	LabelEn string
	Format  string // Field.Format: how the confirm page shows Value
	// Value is the field's first value in the order the bank reads them
	// (query first, then body), decoded to UTF-8, with characters that
	// display misleadingly escaped (Match.Verdict Escaped); empty if the
	// field is absent or could not be read.
	Value string
	// Values holds every distinct value, in the same order and escaped
	// alike, when there is more than one; nil otherwise. The bank may read
	// any one of them (a repeated form field, a duplicate JSON key, the
	// elements of a JSON array, the same name in another letter case), so
	// the Verdict is then Conflicting.
	Values []string
}

// ErrConflictingValues is reported in Match.Err when a shown field has more
// than one distinct value: a backend that takes the last value, or joins
// them, would execute something other than what the confirm page shows.
var ErrConflictingValues = errors.New("shown field has conflicting values")

// Watches reports whether some rule could match the request judging by its
// path and method alone, that is whether the gateway must buffer the body
// and call Classify. It does not allocate for clean paths that match nothing.
func (p *Policy) Watches(r *Request) bool {
	var buf [8]int
	idx := p.matchPath(r.Path, buf[:0])
	if len(idx) == 0 {
		return false
	}
	if !r.NoBody {
		return true
	}
	methods := baseMethods(r)
	methods = append(methods, queryMethods(r.RawQuery)...)
	for _, i := range idx {
		if p.compiled[i].methodMatches(methods) {
			return true
		}
	}
	return false
}

// Classify returns the first rule that the request matches, with the fields
// to show, or nil if none does. body is the whole request body, already
// buffered by the caller; it may be nil.
//
// It fails closed: if the query or body cannot be read exactly as the bank
// reads it (a body type other than a form or JSON, bad percent-encoding,
// multipart or JSON syntax, an ambiguous multipart part, an unknown or
// unfitting charset, a Content-Encoding), a rule whose path and method match
// and that has conditions or shown fields matches anyway, with the Verdict
// Refused and a *Refusal in Match.Err; so does a rule of another method, if
// the body that did not parse might have carried a "_method" for it.
func (p *Policy) Classify(r *Request, body []byte) *Match {
	idx := p.matchPath(r.Path, nil)
	if len(idx) == 0 {
		return nil
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)

	base := baseMethods(r)
	ct := parseContentType(r.Header)
	parsed := make(map[string]*params)
	for _, i := range idx {
		rule, c := &p.rules[i], &p.compiled[i]
		ps := parsed[c.charset.name]
		if ps == nil {
			ps = parseParams(r, ct, body, c.charset)
			parsed[c.charset.name] = ps
		}
		methodDoubt := false
		if !c.methodMatches(base) && !c.methodMatches(ps.methods()) {
			if ps.bodyErr == nil {
				continue
			}
			methodDoubt = true
		}
		needsBody := len(rule.Params) > 0 || len(rule.Show) > 0 || rule.ShowFile != nil
		if !ps.holds(rule.Params) && (ps.err == nil || !needsBody) {
			continue
		}
		m := &Match{Rule: rule, Kind: rule.Kind, Fields: make([]ShownField, len(rule.Show))}
		for j, f := range rule.Show {
			m.Fields[j] = ShownField{Name: f.Name, Label: f.Label, LabelEn: f.LabelEn, Format: f.Format}
		}
		switch {
		case needsBody && ps.err != nil:
			m.Verdict, m.Doubt, m.Err = Refused, true, ps.err
			return m
		case methodDoubt:
			m.Verdict, m.Doubt, m.Err = Refused, true, ps.bodyErr
			return m
		}
		var errs []error
		for j, f := range rule.Show {
			sf := &m.Fields[j]
			vs, conflict := ps.show(f.Name)
			var found []rune
			for k, v := range vs {
				var fk []rune
				vs[k], fk = escapeShown(v)
				found = append(found, fk...)
			}
			if len(vs) > 0 {
				sf.Value = vs[0]
			}
			if len(vs) > 1 {
				sf.Values = vs
			}
			if conflict {
				m.Verdict = Conflicting
				errs = append(errs, fmt.Errorf("%w: %q", ErrConflictingValues, f.Name))
			}
			if found != nil {
				if m.Verdict == Exact {
					m.Verdict = Escaped
				}
				errs = append(errs, fmt.Errorf("%w: %q holds %s", ErrEscaped, f.Name, codePoints(found)))
			}
		}
		if len(errs) > 0 {
			m.Doubt = true
			m.Err = errors.Join(errs...)
		}
		if c.file != nil {
			m.readFile(c.file, r.Header.Get("Content-Type"), body)
		}
		return m
	}
	return nil
}

// matchPath appends to dst the rules with a path pattern that matches some
// reading of path.
func (p *Policy) matchPath(path string, dst []int) []int {
	var segs [maxFastSegments]string
	if n, ok := splitClean(path, &segs); ok {
		return p.root.collect(segs[:n], dst)
	}
	for _, rd := range readings(path) {
		dst = p.root.collect(rd, dst)
	}
	return dst
}

// methodOverrideHeaders are the headers that frameworks (Spring's
// HiddenHttpMethodFilter variants, ASP.NET, Rails, Laravel) accept in place
// of the request method.
var methodOverrideHeaders = []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// baseMethods returns the methods the bank could act on, judging by the
// request line and headers: the method itself, GET for HEAD (servlets serve
// HEAD with doGet), and every override header value.
func baseMethods(r *Request) []string {
	methods := addMethod(nil, r.Method)
	for _, h := range methodOverrideHeaders {
		for _, v := range r.Header.Values(h) {
			for m := range strings.SplitSeq(v, ",") {
				methods = addMethod(methods, m)
			}
		}
	}
	return methods
}

func addMethod(methods []string, m string) []string {
	m = strings.ToUpper(strings.TrimSpace(m))
	if m == "" {
		return methods
	}
	methods = append(methods, m)
	if m == "HEAD" {
		methods = append(methods, "GET")
	}
	return methods
}

// queryMethods returns the "_method" values of a query string.
func queryMethods(rawQuery string) []string {
	var methods []string
	query, _ := parseURLEncoded(rawQuery)
	for _, p := range query {
		if strings.EqualFold(string(p.name), "_method") {
			methods = addMethod(methods, string(p.value))
		}
	}
	return methods
}

// methodMatches reports whether the rule accepts one of methods, which
// addMethod has upper-cased.
func (c *compiled) methodMatches(methods []string) bool {
	if len(c.methods) == 0 {
		return true
	}
	for _, m := range methods {
		if slices.Contains(c.methods, m) {
			return true
		}
	}
	return false
}
