package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/unicode"
)

// param is one request parameter, in the order the bank reads them.
type param struct {
	name, value string
	// valueless marks a JSON object or array: present, with no value of
	// its own.
	valueless bool
}

// params are a request's query and body parameters together.
type params struct {
	list []param
	// err is the first thing that could not be read as the bank reads it,
	// a *Refusal.
	err error
	// bodyErr is the first reason the body could not be parsed, so that a
	// "_method" in it might have gone unseen.
	bodyErr error
}

func (ps *params) fail(err error) {
	if ps.err == nil && err != nil {
		ps.err = err
	}
}

func (ps *params) failBody(err error) {
	ps.fail(err)
	if ps.bodyErr == nil && err != nil {
		ps.bodyErr = err
	}
}

// holds reports whether every condition holds. Names and values are compared
// ignoring case, and values ignoring surrounding whitespace: IIS reads
// parameter names that way and many handlers compare values so, and a
// condition that holds too often only asks for a code too often.
func (ps *params) holds(conds []Condition) bool {
	for _, c := range conds {
		if !ps.has(c) {
			return false
		}
	}
	return true
}

func (ps *params) has(c Condition) bool {
	want := strings.TrimSpace(c.Value)
	for _, p := range ps.list {
		if !strings.EqualFold(p.name, c.Name) {
			continue
		}
		if c.Value == "" || !p.valueless && strings.EqualFold(strings.TrimSpace(p.value), want) {
			return true
		}
	}
	return false
}

// show returns the distinct values of a shown field in the order the bank
// reads them: those under exactly this name (servlets compare names
// exactly), then those whose name differs only in case (IIS does not). It
// reports a conflict when there are several: repeated form fields,
// duplicate JSON keys and the elements of a JSON array are read as the
// first value by some servers (the demo bank among them), as the last or
// all of them by others.
func (ps *params) show(name string) (values []string, conflict bool) {
	var other []string
	for _, p := range ps.list {
		switch {
		case p.valueless:
		case p.name == name:
			values = appendNew(values, p.value)
		case strings.EqualFold(p.name, name):
			other = appendNew(other, p.value)
		}
	}
	for _, v := range other {
		values = appendNew(values, v)
	}
	return values, len(values) > 1
}

func appendNew(vs []string, v string) []string {
	for _, w := range vs {
		if w == v {
			return vs
		}
	}
	return append(vs, v)
}

// methods returns the "_method" values, upper case.
func (ps *params) methods() []string {
	var methods []string
	for _, p := range ps.list {
		if !p.valueless && strings.EqualFold(p.name, "_method") {
			methods = addMethod(methods, p.value)
		}
	}
	return methods
}

// charset is a character set with the name it was asked for by.
type charset struct {
	name string
	enc  encoding.Encoding // nil: UTF-8
}

// same reports whether cs and o decode alike.
func (cs charset) same(o charset) bool { return cs.encoding() == o.encoding() }

func (cs charset) encoding() encoding.Encoding {
	if cs.enc == nil {
		return unicode.UTF8
	}
	return cs.enc
}

func (cs charset) String() string {
	if cs.name == "" {
		return "utf-8"
	}
	return cs.name
}

// decode converts b to UTF-8. Bytes that do not fit the charset become
// U+FFFD and are reported: the bank may be reading the request in another
// charset than the one the gateway assumed.
func (cs charset) decode(b []byte) (string, error) {
	if cs.enc == nil || cs.enc == unicode.UTF8 {
		if utf8.Valid(b) {
			return string(b), nil
		}
		return strings.ToValidUTF8(string(b), "\uFFFD"), fmt.Errorf("not valid %s", cs)
	}
	out, err := cs.enc.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), fmt.Errorf("not valid %s: %v", cs, err)
	}
	if bytes.ContainsRune(out, utf8.RuneError) {
		return string(out), fmt.Errorf("not valid %s", cs)
	}
	if err := javaAgrees(cs.name, cs.enc, b); err != nil {
		return string(out), err
	}
	// Browsers name charsets by WHATWG labels, Java servers by IANA names,
	// and some labels differ: "iso-8859-1" is windows-1252 to a browser and
	// Latin-1 to Java, which reads 0x80 as a control character, not "€".
	if alt, err := ianaindex.IANA.Encoding(cs.name); err == nil && alt != nil && alt != cs.enc {
		if other, err := alt.NewDecoder().Bytes(b); err != nil || !bytes.Equal(other, out) {
			return string(out), fmt.Errorf("read one way in %s by browsers and another by Java servers", cs)
		}
	}
	return string(out), nil
}

// contentType is a parsed Content-Type header.
type contentType struct {
	media   string // lower case, "" if absent
	charset string
	params  map[string]string
	err     error
}

func parseContentType(h http.Header) contentType {
	vs := h.Values("Content-Type")
	if len(vs) == 0 {
		return contentType{}
	}
	var ct contentType
	if len(vs) > 1 {
		ct.err = fmt.Errorf("%d Content-Type headers", len(vs))
	}
	media, ps, err := mime.ParseMediaType(vs[0])
	if err != nil {
		// Read it anyway, as a lenient server would, but in doubt.
		var loose map[string][]string
		media, loose = splitHeaderParams(vs[0])
		media = strings.ToLower(media)
		ps = make(map[string]string)
		for k, v := range loose {
			ps[k] = v[0]
		}
		if ct.err == nil {
			ct.err = fmt.Errorf("bad Content-Type %q: %v", vs[0], err)
		}
	}
	ct.media, ct.params, ct.charset = media, ps, ps["charset"]
	return ct
}

// parseParams reads the query and body parameters. fallback is the rule's
// charset for query strings and forms that declare none. What it cannot
// read exactly as the bank does (see the rule in wysiwyc.go) it reports as
// a *Refusal in ps.err, reading on so that conditions met elsewhere still
// match.
func parseParams(r *Request, ct contentType, body []byte, fallback charset) *params {
	ps := &params{}
	if len(body) > 0 && ct.err != nil {
		ps.failBody(refusef("the Content-Type header cannot be read (%v); send one Content-Type: application/x-www-form-urlencoded or multipart/form-data", ct.err))
	}
	// JSON is UTF-8 unless declared otherwise; forms and queries fall back
	// to the rule's charset, as a servlet configured for it would.
	cs, jsonCS := fallback, charset{}
	declared := ct.charset != ""
	if declared {
		enc, err := lookupCharset(ct.charset)
		if err != nil {
			ps.fail(refusef("the request declares the unknown charset %q; send UTF-8 or the charset of the bank's form", ct.charset))
		} else {
			cs = charset{name: ct.charset, enc: enc}
			jsonCS = cs
		}
	}
	query, err := parseURLEncoded(r.RawQuery)
	if err != nil {
		ps.fail(refusef("the query string cannot be read (%v); send a literal \"%%\" as %%25", err))
	}

	var form []rawParam
	ce := r.Header.Get("Content-Encoding")
	if ce != "" && !strings.EqualFold(ce, "identity") && len(body) > 0 {
		// A backend that inflates bodies would see parameters the gateway
		// cannot.
		ps.failBody(refusef("the request body has Content-Encoding %q and cannot be shown for confirmation; send it uncompressed", ce))
		body = nil
	}
	switch media := ct.media; {
	case len(body) == 0:
	case media == "application/x-www-form-urlencoded":
		form, err = parseURLEncoded(string(body))
		if err != nil {
			ps.failBody(refusef("the form body cannot be read (%v); send a literal \"%%\" as %%25", err))
		}
	case media == "multipart/form-data":
		form, err = parseMultipart(body, ct.params["boundary"])
		if err != nil {
			ps.failBody(refusef("the multipart body cannot be read as the bank reads it (%v); send form-data parts with plain name=\"…\" and filename=\"…\" parameters, as browsers do", err))
		}
	case isJSON(media) && ct.charset != "" && !jsonCS.same(charset{}):
		// JSON readers (encoding/json, Jackson) read UTF-8 whatever the
		// Content-Type says.
		ps.failBody(refusef("a JSON body in %q is read as UTF-8 by JSON readers; send it in UTF-8", ct.charset))
	case isJSON(media):
		ps.addQuery(query, fallback, cs)
		if err := parseJSON(ps, body, jsonCS); err != nil {
			ps.failBody(refusef("the JSON body cannot be read (%v); send one well-formed JSON object", err))
		}
		ps.checkNames()
		return ps
	case media == "":
		ps.failBody(refusef("the request body has no Content-Type and cannot be shown for confirmation; send application/x-www-form-urlencoded or multipart/form-data"))
	default:
		// text/plain among them: a servlet reads no parameters from it,
		// a lenient handler reads it as a form; no reading is the bank's.
		ps.failBody(refusef("the request body type %q cannot be shown for confirmation; send application/x-www-form-urlencoded or multipart/form-data", media))
	}
	if !declared {
		// Servlet containers ignore "_charset_", a few frameworks decode the
		// form in it: it can only agree with the charset the form is read in.
		for _, p := range form {
			if string(p.name) == "_charset_" {
				enc, err := lookupCharset(string(p.value))
				switch {
				case err != nil:
					ps.fail(refusef("the form's _charset_ field names the unknown charset %q; send UTF-8 or the charset of the bank's form", p.value))
				case !cs.same(charset{enc: enc}):
					ps.fail(refusef("the form's _charset_ field names %q, but the bank reads this form as %s; send it in %s, or declare the charset in the Content-Type", p.value, cs, cs))
				}
				break
			}
		}
	}
	for _, p := range form {
		if p.charset.name != "" && !p.charset.same(cs) {
			// Go servers decode a part in its own charset, Tomcat in the
			// request's: they read different text.
			ps.failBody(refusef("the multipart part %q declares the charset %q, not the form's %s; send every field in the form's charset", p.name, p.charset.name, cs))
			break
		}
	}
	ps.addQuery(query, fallback, cs)
	for _, p := range form {
		ps.add(p, cs)
	}
	ps.checkNames()
	return ps
}

// checkNames refuses parameter names that backends could read as another
// name (see badName).
func (ps *params) checkNames() {
	for _, p := range ps.list {
		if why := badName(p.name); why != "" {
			ps.fail(refusef("the parameter name %q has %s; send the field names of the bank's form unchanged", p.name, why))
			return
		}
	}
}

// addQuery decodes the query in the rule's charset, as a servlet
// container set up for the bank's pages reads URLs (Tomcat's URIEncoding).
// Some containers read it in the body's charset instead
// (useBodyEncodingForURI), so non-ASCII text in it is refused when the body
// declares another.
func (ps *params) addQuery(query []rawParam, url, body charset) {
	for _, p := range query {
		if !url.same(body) && (hasHighByte(p.name) || hasHighByte(p.value)) {
			ps.fail(refusef("the query string holds non-ASCII text, which servers read in the URL's charset (%s) or the body's (%s); send it in the body", url, body))
		}
		ps.add(p, url)
	}
}

func hasHighByte(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// add decodes p. Bytes not valid in the charset are refused: the bank,
// reading in the charset it was configured for, may make other characters
// of them than the U+FFFD the gateway would show.
func (ps *params) add(p rawParam, cs charset) {
	name, err := cs.decode(p.name)
	if err != nil {
		ps.fail(refusef("a parameter name is %v; send the form in the charset it declares", err))
	}
	value, err := cs.decode(p.value)
	if err != nil {
		ps.fail(refusef("the parameter %q is %v; send the form in the charset it declares", name, err))
	}
	ps.list = append(ps.list, param{name: name, value: value})
}

// rawParam is a parameter before charset decoding.
type rawParam struct {
	name, value []byte
	charset     charset // the multipart part's own charset, if it declares one: refused unless the form's
}

// parseURLEncoded splits a query string or form body. Servlets split on "&"
// only, so ";" is part of a value. An invalid escape is kept literally and
// reported.
func parseURLEncoded(s string) ([]rawParam, error) {
	out := make([]rawParam, 0, strings.Count(s, "&")+1)
	var firstErr error
	for pair := range strings.SplitSeq(s, "&") {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		n, ok1 := unescapeForm(name)
		v, ok2 := unescapeForm(value)
		if firstErr == nil && !(ok1 && ok2) {
			// Not the value: it may be a PIN or a code.
			firstErr = fmt.Errorf("invalid %% escape in parameter %q", n)
		}
		out = append(out, rawParam{name: n, value: v})
	}
	return out, firstErr
}

// unescapeForm decodes "+" and %XX, keeping invalid escapes literally, and
// reports whether all were valid.
func unescapeForm(s string) ([]byte, bool) {
	ok := true
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		case c == '%':
			ok = false
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	return b, ok
}

// parseMultipart reads the fields of a multipart body. A file part counts as
// a field whose value is its file name. It fails on any part whose name or
// file name a servlet could read differently (see partName).
func parseMultipart(body []byte, boundary string) ([]rawParam, error) {
	if boundary == "" {
		return nil, errors.New("no boundary")
	}
	var out []rawParam
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for n := 1; ; n++ {
		// NextRawPart: the bank does not undo quoted-printable either.
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if te := part.Header.Get("Content-Transfer-Encoding"); te != "" {
			return out, fmt.Errorf("part %d has Content-Transfer-Encoding %q", n, te)
		}
		name, filename, isFile, err := partName(part.Header.Values("Content-Disposition"))
		if err != nil {
			return out, fmt.Errorf("part %d: %v", n, err)
		}
		if name == "" {
			// Neither Go's FormName nor a servlet's getFieldName reads it.
			continue
		}
		p := rawParam{name: []byte(name)}
		if isFile {
			p.value = []byte(filename)
		} else {
			value, err := io.ReadAll(part)
			if err != nil {
				return out, err
			}
			p.value = value
			if pct := part.Header.Get("Content-Type"); pct != "" {
				if _, pp, err := mime.ParseMediaType(pct); err == nil && pp["charset"] != "" {
					enc, err := lookupCharset(pp["charset"])
					if err != nil {
						return out, fmt.Errorf("part %d: %v", n, err)
					}
					p.charset = charset{name: pp["charset"], enc: enc}
				}
			}
		}
		out = append(out, p)
	}
}

// partName reads the name and file name of a multipart part from its
// Content-Disposition headers, and fails unless every reader reads them
// alike: Go's mime.ParseMediaType (the demo bank, Go servers), this
// package's byte-preserving splitHeaderParams, and a servlet container's
// parameter parser (commons-fileupload in Tomcat), which takes quoted
// values without undoing backslash escapes in names, decodes RFC 2231
// "name*=" and "filename*=" where Go lets them override the plain
// parameter, and accepts any disposition starting with "form-data". RFC 2047
// encoded words are decoded by some frameworks (Spring) and not others, and
// a file name with a directory is cut to its last element by some.
// A part with no Content-Disposition has no name for any of them.
func partName(cds []string) (name, filename string, isFile bool, err error) {
	switch len(cds) {
	case 0:
		return "", "", false, nil
	case 1:
	default:
		return "", "", false, fmt.Errorf("%d Content-Disposition headers", len(cds))
	}
	disp, goParams, err := mime.ParseMediaType(cds[0])
	if err != nil {
		return "", "", false, fmt.Errorf("Content-Disposition does not parse (%v)", err)
	}
	if disp != "form-data" {
		return "", "", false, fmt.Errorf("Content-Disposition %q is not form-data", disp)
	}
	_, raw := splitHeaderParams(cds[0])
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if strings.Contains(k, "*") {
			return "", "", false, fmt.Errorf("RFC 2231 parameter %q", k)
		}
	}
	for _, k := range []string{"name", "filename"} {
		v, ok := goParams[k]
		switch {
		case len(raw[k]) > 1:
			return "", "", false, fmt.Errorf("repeated %s parameter", k)
		case ok != (len(raw[k]) == 1) || ok && raw[k][0] != v:
			return "", "", false, fmt.Errorf("%s parameter read in two ways", k)
		case strings.Contains(v, "=?") && strings.Contains(v, "?="):
			return "", "", false, fmt.Errorf("RFC 2047 encoded word in the %s parameter", k)
		}
	}
	if hasEscape(cds[0], "name") {
		return "", "", false, errors.New(`backslash in the name parameter`)
	}
	if strings.ContainsAny(goParams["filename"], `/\`) {
		// Go's FileName and the demo bank keep the last element, Tomcat
		// the whole: the file would be shown under another name. Only old
		// Internet Explorer sent a directory.
		return "", "", false, errors.New("a directory in the filename parameter (send the file name only)")
	}
	_, isFile = goParams["filename"]
	return goParams["name"], goParams["filename"], isFile, nil
}

// hasEscape reports whether the parameter key of header value s holds a
// backslash as sent: servlets keep it, Go and splitHeaderParams unescape.
func hasEscape(s, key string) bool {
	_, rest, _ := strings.Cut(s, ";")
	for rest != "" {
		var item string
		item, rest = cutParam(rest)
		k, v, _ := strings.Cut(item, "=")
		if strings.EqualFold(strings.TrimSpace(k), key) && strings.Contains(v, `\`) {
			return true
		}
	}
	return false
}

// splitHeaderParams splits a header value such as a Content-Disposition into
// its first element and its parameters, keeping the bytes of values as sent
// (browsers put raw UTF-8 or Shift_JIS in field names) and every occurrence
// of a repeated parameter. Quoted values may contain ";" and backslash
// escapes.
func splitHeaderParams(s string) (string, map[string][]string) {
	params := make(map[string][]string)
	first, rest, _ := strings.Cut(s, ";")
	for rest != "" {
		var item string
		item, rest = cutParam(rest)
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' {
			v = unquote(v)
		}
		params[k] = append(params[k], v)
	}
	return strings.TrimSpace(first), params
}

// cutParam returns the text up to the first ";" outside quotes, and the rest.
func cutParam(s string) (string, string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func unquote(v string) string {
	v = strings.TrimSuffix(v[1:], `"`)
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func isJSON(media string) bool {
	_, sub, _ := strings.Cut(media, "/")
	return sub == "json" || strings.HasSuffix(sub, "+json")
}

// parseJSON adds the members of a JSON body to ps: nested members under
// dotted names, array elements as repeated values, numbers as written,
// duplicate keys as repeated values (as a streaming parser sees them).
func parseJSON(ps *params, body []byte, cs charset) error {
	text, err := cs.decode(body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(strings.TrimPrefix(text, "\ufeff")))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		err = jsonObject(ps, dec, "", 1)
	case json.Delim('['):
		err = jsonArray(ps, dec, "", 1)
	default:
		return errors.New("neither an object nor an array")
	}
	if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the top-level value")
	}
	return nil
}

// maxJSONDepth bounds nesting: no bank form nests deeply, and a body of a
// million "[" would otherwise cost seconds of recursion.
const maxJSONDepth = 64

func jsonObject(ps *params, dec *json.Decoder, prefix string, depth int) error {
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if prefix != "" {
			key = prefix + "." + key
		}
		if err := jsonValue(ps, dec, key, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

func jsonArray(ps *params, dec *json.Decoder, name string, depth int) error {
	for dec.More() {
		if err := jsonValue(ps, dec, name, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

func jsonValue(ps *params, dec *json.Decoder, name string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if depth == maxJSONDepth {
			return fmt.Errorf("nested deeper than %d", maxJSONDepth)
		}
		if name != "" {
			ps.list = append(ps.list, param{name: name, valueless: true})
		}
		if v == '{' {
			return jsonObject(ps, dec, name, depth+1)
		}
		return jsonArray(ps, dec, name, depth+1)
	case string:
		ps.list = append(ps.list, param{name: name, value: v})
	case json.Number:
		ps.list = append(ps.list, param{name: name, value: v.String()})
	case bool:
		ps.list = append(ps.list, param{name: name, value: fmt.Sprint(v)})
	case nil:
		ps.list = append(ps.list, param{name: name})
	}
	return nil
}
