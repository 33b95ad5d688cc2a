package demobank

// The bank reads requests the way old Java servlet containers and IIS did. Every quirk
// here widens the set of requests that execute an operation, and the gateway in front
// must recognise each of them; a stricter bank would let gateway bugs go unnoticed.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// maxBody bounds what the bank reads of one request body, so a test or a demo visitor
// cannot exhaust memory; bulk files are hashed while streaming and do not count twice.
const maxBody = 32 << 20

// maxDecodes bounds the repeated percent-decoding of a path. Each pass is linear, and
// a path of nested "%25" would otherwise cost quadratic time.
const maxDecodes = 32

var errBadPath = errors.New("path is encoded too deeply")

// target is the request path as the bank understands it.
type target struct {
	path       string   // normalised and lower-cased, e.g. "/transfer/execute"
	sessionIDs []string // values of ";jsessionid=" path parameters, in order
}

// readTarget reads the path of r leniently. It uses the raw request target, since
// r.URL.Path has already lost the distinction between "/" and "%2F" and would make
// the bank look stricter than it is.
func readTarget(r *http.Request) (target, error) {
	return normalisePath(rawPath(r))
}

func rawPath(r *http.Request) string {
	raw := r.RequestURI
	if raw == "" {
		// A request built in code (a client request, a test) has no raw target.
		return r.URL.EscapedPath()
	}
	if i := strings.Index(raw, "://"); i >= 0 && !strings.HasPrefix(raw, "/") {
		// Absolute form ("http://host/path"), as proxies send it.
		rest := raw[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 && rest[j] == '/' {
			raw = rest[j:]
		} else {
			raw = "/"
		}
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	return raw
}

// normalisePath applies, in this order: percent-decoding until stable, backslash as
// slash, truncation at NUL, removal of ";..." parameters from each segment (keeping
// jsessionid), collapse of empty segments, resolution of "." and "..", trimming of
// trailing "/", "." and spaces, and ASCII lower-casing.
func normalisePath(raw string) (target, error) {
	s := raw
	stable := false
	for range maxDecodes {
		d := percentDecode(s, false)
		if d == s {
			stable = true
			break
		}
		s = d
	}
	if !stable {
		return target{}, errBadPath
	}
	s = strings.ReplaceAll(s, `\`, "/")
	var t target
	// The container takes the session from path parameters before the application
	// reads the path, so a NUL does not hide a jsessionid behind it.
	for seg := range strings.SplitSeq(s, "/") {
		t.sessionIDs = append(t.sessionIDs, jsessionIDs(seg)...)
	}
	// Java's native file and string APIs stopped at NUL, so "/x%00.gif" reached "/x".
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	var segs []string
	for seg := range strings.SplitSeq(s, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case "", ".":
			continue
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			continue
		}
		segs = append(segs, seg)
	}
	p := strings.TrimRight("/"+strings.Join(segs, "/"), "/. ")
	if p == "" {
		p = "/"
	}
	t.path = asciiLower(p)
	return t, nil
}

// jsessionIDs returns the values of jsessionid parameters of one path segment
// ("/x;a=b;jsessionid=ID"). The name is matched without regard to case.
func jsessionIDs(seg string) []string {
	_, params, ok := strings.Cut(seg, ";")
	if !ok {
		return nil
	}
	var ids []string
	for p := range strings.SplitSeq(params, ";") {
		name, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "jsessionid") && val != "" {
			ids = append(ids, val)
		}
	}
	return ids
}

// asciiLower folds only A–Z: Windows and Java servers compared path names without
// Unicode case folding, and a wider fold here would demand one of the gateway that no
// real server has.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// percentDecode decodes every valid %XX and leaves malformed escapes as they are, as
// lenient servers did instead of rejecting the request.
func percentDecode(s string, plusIsSpace bool) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c == '+' && plusIsSpace:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
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
	default:
		return c - 'a' + 10
	}
}

// upload is a file part of a multipart body. Its content is not kept: the ledger
// records what arrived, and a digest proves that.
type upload struct {
	filename string
	size     int64
	sha256   string
}

// params holds request parameters the way a servlet's getParameter sees them: the
// first value of each name wins, and the query comes before the body.
type params struct {
	values  map[string]string
	uploads map[string]upload
}

func (ps *params) add(name, value string) {
	if _, ok := ps.values[name]; !ok {
		ps.values[name] = value
	}
}

func (ps *params) get(name string) string { return ps.values[name] }

// has reports whether any of names was sent.
func (ps *params) has(names ...string) bool {
	for _, n := range names {
		if _, ok := ps.values[n]; ok {
			return true
		}
	}
	return false
}

// readParams reads the query and the body of any method; servlet containers
// configured to parse bodies of PUT and PATCH did the same.
func readParams(w http.ResponseWriter, r *http.Request) (*params, error) {
	ps := &params{values: map[string]string{}, uploads: map[string]upload{}}
	parseURLEncoded(r.URL.RawQuery, "utf-8", ps)
	if r.Body == nil || r.Body == http.NoBody {
		return ps, nil
	}
	body := http.MaxBytesReader(w, r.Body, maxBody)
	mt, mp := mediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "application/x-www-form-urlencoded":
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("reading form body: %w", err)
		}
		parseURLEncoded(string(b), mp["charset"], ps)
	case mt == "multipart/form-data":
		if err := parseMultipart(body, mp["boundary"], mp["charset"], ps); err != nil {
			return nil, fmt.Errorf("reading multipart body: %w", err)
		}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("reading JSON body: %w", err)
		}
		if err := parseJSON(b, mp["charset"], ps); err != nil {
			return nil, fmt.Errorf("reading JSON body: %w", err)
		}
	}
	return ps, nil
}

// mediaType parses a Content-Type, falling back to the part before ";" when the
// parameters are malformed, because an old container dispatched on the type alone.
func mediaType(ct string) (string, map[string]string) {
	mt, mp, err := mime.ParseMediaType(ct)
	if err != nil {
		base, _, _ := strings.Cut(ct, ";")
		return strings.ToLower(strings.TrimSpace(base)), map[string]string{}
	}
	return mt, mp
}

// parseURLEncoded splits on "&" only: old containers took ";" in a query as part of
// the value, and Go's url.ParseQuery would drop such pairs instead.
func parseURLEncoded(s, charset string, ps *params) {
	for pair := range strings.SplitSeq(s, "&") {
		if pair == "" {
			continue
		}
		name, value, _ := strings.Cut(pair, "=")
		ps.add(decodeCharset(percentDecode(name, true), charset), decodeCharset(percentDecode(value, true), charset))
	}
}

// decodeCharset turns bytes in the named charset into a Go string. Only UTF-8 and
// ISO-8859-1 are understood (the standard library has no Japanese encodings); other
// bytes are kept as they came, which is what a servlet with the wrong charset did too.
func decodeCharset(s, charset string) string {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(charset), `"`)) {
	case "iso-8859-1", "iso8859-1", "latin1", "l1":
		if !hasHighByte(s) {
			return s
		}
		r := make([]rune, len(s))
		for i := 0; i < len(s); i++ {
			r[i] = rune(s[i])
		}
		return string(r)
	default:
		return s
	}
}

func hasHighByte(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

func parseMultipart(body io.Reader, boundary, charset string, ps *params) error {
	if boundary == "" {
		return errors.New("no boundary")
	}
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := part.FormName()
		_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if _, isFile := dp["filename"]; isFile {
			if err := readUpload(part, name, ps); err != nil {
				return err
			}
			continue
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return err
		}
		cs := charset
		if _, pp := mediaType(part.Header.Get("Content-Type")); pp["charset"] != "" {
			cs = pp["charset"]
		}
		if name != "" {
			ps.add(name, decodeCharset(string(b), cs))
		}
	}
}

func readUpload(part *multipart.Part, name string, ps *params) error {
	h := sha256.New()
	n, err := io.Copy(h, part)
	if err != nil {
		return err
	}
	filename := part.FileName()
	// Old Internet Explorer sent the whole Windows path ("C:\data\pay.csv").
	if i := strings.LastIndexAny(filename, `\/`); i >= 0 {
		filename = filename[i+1:]
	}
	if filename == "" || name == "" {
		// A file input left empty arrives as a part with an empty filename.
		return nil
	}
	if _, ok := ps.uploads[name]; !ok {
		ps.uploads[name] = upload{filename: filename, size: n, sha256: hex.EncodeToString(h.Sum(nil))}
	}
	return nil
}

// parseJSON reads the members of a JSON object as parameters, first member of a name
// winning like everywhere else (encoding/json into a map would keep the last).
func parseJSON(b []byte, charset string, ps *params) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if v, ok := jsonScalar(raw); ok {
			ps.add(decodeCharset(name, charset), decodeCharset(v, charset))
		}
	}
	_, err = dec.Token()
	return err
}

// jsonScalar gives the parameter value of a JSON member: strings as they are,
// numbers and booleans as written, the first scalar of an array. null and objects
// are no parameter.
func jsonScalar(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return "", false
		}
		for _, e := range arr {
			if v, ok := jsonScalar(e); ok {
				return v, true
			}
		}
		return "", false
	case '{', 'n':
		return "", false
	default:
		return string(raw), true
	}
}

// overrideHeaders are read in this order, before the _method parameter.
var overrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// effectiveMethod applies method overrides on any method, not only POST: frameworks
// differed, and the gateway must assume the widest reading.
func effectiveMethod(r *http.Request, ps *params) string {
	for _, h := range overrideHeaders {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			return strings.ToUpper(v)
		}
	}
	if v := strings.TrimSpace(ps.get("_method")); v != "" {
		return strings.ToUpper(v)
	}
	return strings.ToUpper(r.Method)
}

// executingMethods are those an HttpServlet dispatches to a doXxx method that the
// bank's servlets implement by executing the operation.
var executingMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
	http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true,
}

const allowHeader = "GET, HEAD, POST, PUT, PATCH, DELETE"

// record turns the parameters into a ledger entry's Params. _method is left out: it
// chose the method and is recorded there.
func (ps *params) record() map[string]string {
	m := make(map[string]string, len(ps.values)+3*len(ps.uploads))
	for k, v := range ps.values {
		if k != "_method" {
			m[k] = v
		}
	}
	// A servlet reads an uploaded file with getPart, not getParameter, so the file
	// wins over a plain parameter of the same name.
	for name, u := range ps.uploads {
		m[name] = u.filename
		m[name+"_size"] = strconv.FormatInt(u.size, 10)
		m[name+"_sha256"] = u.sha256
	}
	return m
}
