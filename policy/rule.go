package policy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"

	"github.com/otpgate/otpgate/internal/display"
)

// Kind is one of the five operation kinds that need a one-time code.
type Kind string

// The operation kinds of the service being reproduced.
const (
	// Transfer is an ad-hoc transfer (都度指定方式による振替・振込).
	Transfer Kind = "transfer"
	// BillPayment is a bill payment (各種料金の払込).
	BillPayment Kind = "bill_payment"
	// BulkTransfer is a bulk, payroll or bonus transfer (総合振込、給与・賞与振込).
	BulkTransfer Kind = "bulk_transfer"
	// TokenManagement is an OTP token change (ワンタイムパスワードトークン管理).
	TokenManagement Kind = "token_management"
	// UserChange is a change to user registration (利用者登録情報変更).
	UserChange Kind = "user_change"
)

var kinds = []Kind{Transfer, BillPayment, BulkTransfer, TokenManagement, UserChange}

// Valid reports whether k is one of the five operation kinds.
func (k Kind) Valid() bool {
	for _, v := range kinds {
		if k == v {
			return true
		}
	}
	return false
}

// Rule describes one protected operation of the bank: which requests perform
// it and what the customer is shown before confirming it. A request is
// protected when its path matches one of Paths, one of its methods is in
// Methods, and every condition in Params holds. Rules are tried in order; the
// first that matches decides the kind.
//
// Matching errs on the side of protection: paths are read the way a lenient
// backend reads them, methods include override headers and "_method" fields,
// and parameter names and condition values are compared ignoring case.
type Rule struct {
	// Name identifies the rule in logs and the audit trail.
	// Default: the kind.
	Name string `json:"name,omitempty"`

	// Kind is the operation kind: "transfer", "bill_payment",
	// "bulk_transfer", "token_management" or "user_change".
	Kind Kind `json:"kind"`

	// Methods lists the HTTP methods that perform the operation, compared
	// ignoring case with every method the bank could act on: the request
	// method (HEAD counts as GET), the X-HTTP-Method-Override, X-HTTP-Method
	// and X-Method-Override headers, and "_method" parameters in the query or
	// body. Default: any method, because the legacy bank executes any.
	Methods []string `json:"methods,omitempty"`

	// Paths lists the path patterns of the operation; at least one is
	// required. Patterns are normalised like requests, so "/Transfer/Execute/"
	// and "/transfer/execute" are the same pattern. A segment "*" matches
	// exactly one segment; a final segment "**" matches any remainder, also
	// none ("/transfer/**" matches "/transfer" and everything below it). Other
	// segments are literal and compared ignoring case; a last literal segment
	// without a dot also matches with any extension ("/transfer/execute"
	// matches "/transfer/execute.json"), as Spring MVC routes it. To cover
	// IIS path info ("/transfer/execute.asp/x"), end the pattern in "/**".
	// A pattern has no query: use Params for query parameters.
	Paths []string `json:"paths"`

	// Params are conditions on the request's parameters (query and body
	// together); all of them must hold. Default: none, so the path and method
	// alone decide.
	Params []Condition `json:"params,omitempty"`

	// Show lists the fields displayed on the confirm page, in this order.
	Show []Field `json:"show,omitempty"`

	// Title names the operation on the confirm page in the bank's own
	// wording ("税金・各種料金の払込"). Default: the name of the kind.
	Title string `json:"title,omitempty"`

	// TitleEn is the English title. Default: the English name of the kind.
	TitleEn string `json:"title_en,omitempty"`

	// ShowFile, if set, summarises the transfer file uploaded with the
	// operation on the confirm page (see FileDisplay).
	ShowFile *FileDisplay `json:"show_file,omitempty"`

	// RefuseDoubtfulFiles refuses (400, Verdict Refused) an operation whose
	// file cannot be found or read, or whose summary has problems (a
	// trailer that disagrees with its records, a record that does not
	// read): the customer cannot confirm what the bank will execute.
	// Without it such a file is held and the confirm page says prominently
	// what is wrong. Needs ShowFile.
	RefuseDoubtfulFiles bool `json:"refuse_doubtful_files,omitempty"`

	// Charset is the character set of query strings and form bodies that
	// declare none, as a WHATWG or IANA name such as "shift_jis",
	// "windows-31j", "euc-jp" or "iso-2022-jp". A charset parameter in the
	// Content-Type takes precedence; a "_charset_" form field naming another
	// charset is refused, since servlet containers ignore it.
	// Default: utf-8.
	Charset string `json:"charset,omitempty"`
}

// Condition is a condition on a request parameter.
type Condition struct {
	// Name is the parameter name: a query, form or multipart field, or a JSON
	// member (dotted path for nested objects, such as "payee.account").
	// Compared ignoring case, since IIS reads parameters that way.
	Name string `json:"name"`

	// Value, if set, must equal at least one of the parameter's values,
	// ignoring case and surrounding whitespace. If empty, the parameter only
	// has to be present, with any value.
	Value string `json:"value,omitempty"`
}

// Field is a request parameter shown on the confirm page.
type Field struct {
	// Name is the parameter name: a query, form or multipart field, or a JSON
	// member (dotted path for nested objects, such as "payee.name").
	Name string `json:"name"`

	// Label is the Japanese label. Default: the name.
	Label string `json:"label,omitempty"`

	// LabelEn is the English label. Default: the Japanese label.
	LabelEn string `json:"label_en,omitempty"`

	// Format is how the confirm page shows the value (package
	// internal/display): "yen" (1,500,000円), "account" (普通 1234567),
	// "date" (2026年12月7日), "code" (exactly, in a box), "bank" (金融機関
	// コード with its name from the operator's table), "branch" (支店コード
	// with its name, within the bank of the nearest "bank" field before it)
	// or "plain". A value that does not read exactly one way in its format
	// is shown as received, with a doubt. Default: plain, stored as "".
	Format string `json:"format,omitempty"`
}

// Policy is a compiled, immutable rule set, safe for concurrent use.
type Policy struct {
	rules    []Rule
	compiled []compiled
	root     *node
}

// compiled holds what Compile derives from a rule.
type compiled struct {
	methods []string // upper case; empty: any method
	charset charset
	file    *fileSpec // Rule.ShowFile
}

// node is a segment trie over all rules' path patterns, so that a request
// path is compared with every rule in one walk.
type node struct {
	lit  map[string]*node
	star *node // "*": any one segment
	end  []int // rules with a pattern ending here
	rest []int // rules with a pattern ending here in "**"
}

// Compile validates rules and prepares them for matching. The rules are
// copied; the Match.Rule of a match points into that copy, with defaults
// filled in.
func Compile(rules []Rule) (*Policy, error) {
	p := &Policy{
		rules:    make([]Rule, len(rules)),
		compiled: make([]compiled, len(rules)),
		root:     &node{},
	}
	for i, r := range rules {
		if err := p.add(i, r); err != nil {
			name := r.Name
			if name == "" {
				name = string(r.Kind)
			}
			return nil, fmt.Errorf("rule %d (%q): %w", i+1, name, err)
		}
	}
	return p, nil
}

func (p *Policy) add(i int, r Rule) error {
	if !r.Kind.Valid() {
		return fmt.Errorf("unknown kind %q (want one of %q)", r.Kind, kinds)
	}
	if r.Name == "" {
		r.Name = string(r.Kind)
	}
	var c compiled
	for _, m := range r.Methods {
		if !httpguts.ValidHeaderFieldName(m) {
			return fmt.Errorf("bad method %q", m)
		}
		c.methods = append(c.methods, strings.ToUpper(m))
	}
	if len(r.Paths) == 0 {
		return errors.New("no paths")
	}
	for _, pat := range r.Paths {
		segs, err := compilePattern(pat)
		if err != nil {
			return fmt.Errorf("bad path %q: %w", pat, err)
		}
		p.root.insert(segs, i)
	}
	for _, cond := range r.Params {
		if cond.Name == "" {
			return errors.New("param condition without a name")
		}
	}
	show := make([]Field, len(r.Show))
	bankShown := false
	for j, f := range r.Show {
		if f.Name == "" {
			return fmt.Errorf("shown field %d without a name", j+1)
		}
		if err := checkFormat(&f, bankShown); err != nil {
			return fmt.Errorf("shown field %q: %w", f.Name, err)
		}
		bankShown = bankShown || f.Format == string(display.Bank)
		if f.Label == "" {
			f.Label = f.Name
		}
		if f.LabelEn == "" {
			f.LabelEn = f.Label
		}
		show[j] = f
	}
	r.Show = show
	if r.ShowFile != nil {
		spec, err := r.ShowFile.compile()
		if err != nil {
			return err
		}
		c.file = &spec
		f := *r.ShowFile
		r.ShowFile = &f
	} else if r.RefuseDoubtfulFiles {
		return errors.New("refuse_doubtful_files without show_file: say which field holds the file and its format")
	}
	if r.Charset != "" {
		enc, err := lookupCharset(r.Charset)
		if err != nil {
			return err
		}
		c.charset = charset{name: r.Charset, enc: enc}
	}
	r.Methods = append([]string(nil), r.Methods...)
	r.Paths = append([]string(nil), r.Paths...)
	r.Params = append([]Condition(nil), r.Params...)
	p.rules[i] = r
	p.compiled[i] = c
	return nil
}

// checkFormat validates a shown field's format, writing "plain" as "". A
// branch code is named within its bank, so a "branch" field needs a "bank"
// field before it.
func checkFormat(f *Field, bankShown bool) error {
	if f.Format == "plain" {
		f.Format = ""
	}
	k, err := display.ParseKind(f.Format)
	if err != nil {
		return fmt.Errorf("%w (or plain)", err)
	}
	if k == display.Branch && !bankShown {
		return errors.New(`format branch needs a field of format bank shown before it (its 金融機関コード)`)
	}
	return nil
}

// compilePattern normalises a path pattern like a request path and checks
// its wildcards.
func compilePattern(pat string) ([]string, error) {
	switch {
	case pat == "":
		return nil, errors.New("empty")
	case pat[0] != '/':
		return nil, errors.New("must start with /")
	case strings.ContainsAny(pat, "?#"):
		return nil, errors.New("a pattern has no query or fragment; use params")
	}
	segs := readPath(pat, -1, true)
	if strings.Join(segs, "/") != strings.Join(readPath(pat, -1, false), "/") {
		return nil, errors.New(`contains NUL, "?" or "#" once decoded`)
	}
	for j, s := range segs {
		switch {
		case s == "**" && j != len(segs)-1:
			return nil, errors.New(`"**" must be the last segment`)
		case s != "*" && s != "**" && strings.Contains(s, "*"):
			return nil, errors.New(`"*" must be a whole segment`)
		}
	}
	return segs, nil
}

func (n *node) insert(segs []string, rule int) {
	for i, s := range segs {
		if s == "**" && i == len(segs)-1 {
			n.rest = append(n.rest, rule)
			return
		}
		if s == "*" {
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
			continue
		}
		if n.lit == nil {
			n.lit = make(map[string]*node)
		}
		c := n.lit[s]
		if c == nil {
			c = &node{}
			n.lit[s] = c
		}
		n = c
	}
	n.end = append(n.end, rule)
}

// collect appends to dst the rules with a pattern that matches segs. The
// segments are lower case, except that ones from splitClean may hold ASCII
// capitals. It does not allocate unless dst must grow.
func (n *node) collect(segs []string, dst []int) []int {
	dst = append(dst, n.rest...)
	if len(segs) == 0 {
		return append(dst, n.end...)
	}
	if c := n.child(segs[0]); c != nil {
		dst = c.collect(segs[1:], dst)
	}
	if len(segs) == 1 {
		// Spring MVC's suffix pattern matching routes "execute.json" and
		// "execute.x.y" to the handler of "execute".
		if i := strings.IndexByte(segs[0], '.'); i > 0 {
			if c := n.child(segs[0][:i]); c != nil {
				dst = append(dst, c.end...)
			}
		}
	}
	if n.star != nil {
		dst = n.star.collect(segs[1:], dst)
	}
	return dst
}

func (n *node) child(seg string) *node {
	if n.lit == nil {
		return nil
	}
	if !hasUpperASCII(seg) {
		return n.lit[seg]
	}
	var buf [64]byte
	if len(seg) <= len(buf) {
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		return n.lit[string(buf[:len(seg)])]
	}
	for k, c := range n.lit {
		if strings.EqualFold(k, seg) {
			return c
		}
	}
	return nil
}

// lookupCharset finds a character set by its WHATWG label (what browsers
// send) or, failing that, its IANA name (what Java servers use, such as
// "Windows-31J").
func lookupCharset(name string) (encoding.Encoding, error) {
	name = strings.TrimSpace(name)
	if enc, err := htmlindex.Get(name); err == nil {
		return enc, nil
	}
	if enc, err := ianaindex.IANA.Encoding(name); err == nil && enc != nil {
		return enc, nil
	}
	return nil, fmt.Errorf("unknown charset %q", name)
}
