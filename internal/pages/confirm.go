package pages

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/zengin"
)

// The confirm page shows values the way a bank shows them (1,500,000円,
// 普通 1234567, 2026年12月7日) and summarises a held transfer file. Both are
// built here from plain data (the fields with their formats, the file's
// summary), so that the gateway only passes what it stored.

// fieldView is one shown field: its value formatted, or as sent with a note
// (Doubt) saying why it could not be.
type fieldView struct {
	Label, Value string
	Code         bool   // shown exactly, in a monospace box
	Doubt        string // why Value is as sent rather than formatted
}

// fieldsOf formats the fields of a confirm page. A branch code is named
// within the bank of the nearest bank field before it (policy checks that
// there is one).
func fieldsOf(lang Lang, fields []Field, banks *display.BankTable) []fieldView {
	var out []fieldView
	bank := ""
	for _, f := range fields {
		kind := display.Kind(f.Format)
		v := display.Show(kind, f.Value, display.Options{Lang: display.Lang(lang), Table: banks, BankCode: bank})
		if kind == display.Bank {
			bank = f.Value
		}
		out = append(out, fieldView{Label: fieldLabel(lang, f), Value: v.Text, Code: v.Kind == display.Code, Doubt: v.Doubt})
	}
	return out
}

// kindTitle names the operation: the revocation of the customer's own
// token in words, else the bank's own title, else the kind's name.
func kindTitle(lang Lang, p *ConfirmPage) string {
	if p.Revoke {
		return T(lang, "kind_revoke")
	}
	first, second := p.Title, p.TitleEn
	if lang == English {
		// A Japanese title on an English page would hide the kind's
		// English name, so there is no falling back to the other language.
		first, second = p.TitleEn, ""
	}
	switch {
	case first != "":
		return first
	case second != "":
		return second
	}
	return kindName(lang, p.Kind)
}

// topTransfers is how many of a file's transfers the confirm page lists:
// the largest, the ones a swapped file would change.
const topTransfers = 10

// maxListedTransfers bounds the rows of a FilePage; a longer file says how many
// are left out. A payroll of 2,000 is listed whole.
const maxListedTransfers = 2000

// fileView is a transfer file summarised.
type fileView struct {
	Unreadable bool     // no file could be read: only the notice is shown
	Doubt      string   // notice: the file has problems
	Problems   []string // what is wrong, in file order
	More       string   // "n more problems"

	Type, Requester, Date, From string // "" when the file does not say
	Count, Total, SHA256        string

	ListHeading string
	Transfers   []transferView
	ListLink    string // URL of the whole list ("" when all are shown)
	ListText    string
	Capped      string // on the file page: not all transfers are listed
}

type transferView struct{ Bank, Branch, Account, Recipient, Amount string }

// fileOf summarises s for the page; top > 0 lists the largest top
// transfers, 0 all of them (up to maxListedTransfers) in file order.
func fileOf(lang Lang, s *zengin.Summary, unreadable bool, top int, list string) *fileView {
	if unreadable {
		return &fileView{Unreadable: true, Doubt: T(lang, "file_unreadable")}
	}
	if s == nil {
		return nil
	}
	dl := display.Lang(lang)
	v := &fileView{}
	if s.Doubtful() {
		v.Doubt = T(lang, "file_doubt")
		for _, p := range s.Problems {
			if lang == English {
				v.Problems = append(v.Problems, p.English())
			} else {
				v.Problems = append(v.Problems, p.Japanese())
			}
		}
		if s.Omitted > 0 {
			v.More = T(lang, "file_problems_more", s.Omitted)
		}
	}
	v.Type = s.TypeJa()
	if lang == English {
		v.Type = s.TypeEn()
	}
	if v.Type == "" {
		v.Type = T(lang, "file_type_unknown", s.TypeCode)
	}
	switch {
	case s.RequesterName != "" && s.RequesterCode != "":
		v.Requester = T(lang, "file_requester_code", s.RequesterName, s.RequesterCode)
	default:
		v.Requester = s.RequesterName
	}
	if s.Date != "" {
		v.Date = display.FormatDate(s.Date, dl).Text
	}
	if a := s.From; a.BankCode != "" || a.Number != "" {
		v.From = strings.Join(nonEmpty(codeName(a.BankCode, a.BankName), codeName(a.BranchCode, a.BranchName), account(lang, a.Type, a.Number)), " ")
	}
	v.Count = countText(lang, s.Count())
	v.Total = display.FormatYen(strconv.FormatInt(s.Total, 10), dl).Text
	v.SHA256 = s.SHA256

	transfers := s.Transfers
	v.ListHeading = T(lang, "file_all")
	switch {
	case top > 0 && len(transfers) > top:
		transfers = s.Top(top)
		v.ListHeading = T(lang, "file_top", top)
		if list != "" {
			v.ListLink, v.ListText = list, T(lang, "file_list_link", group3(int64(s.Count())))
		}
	case top == 0 && len(transfers) > maxListedTransfers:
		transfers = transfers[:maxListedTransfers]
		v.Capped = T(lang, "file_list_capped", group3(int64(s.Count())), group3(maxListedTransfers))
	}
	for _, t := range transfers {
		v.Transfers = append(v.Transfers, transferView{
			Bank:      codeName(t.To.BankCode, t.To.BankName),
			Branch:    codeName(t.To.BranchCode, t.To.BranchName),
			Account:   account(lang, t.To.Type, t.To.Number),
			Recipient: t.Recipient,
			Amount:    display.FormatYen(strconv.FormatInt(t.Amount, 10), dl).Text,
		})
	}
	return v
}

// codeName writes a bank or branch as the file gives it: code and name
// (half-width katakana, as it stands).
func codeName(code, name string) string { return strings.Join(nonEmpty(code, name), " ") }

// account writes an account type by name and the number as in the file;
// a type the page cannot name is shown as its code.
func account(lang Lang, typ, number string) string {
	if name, ok := display.AccountTypeName(typ, display.Lang(lang)); ok {
		typ = name
	}
	return strings.Join(nonEmpty(typ, number), " ")
}

func nonEmpty(ss ...string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func countText(lang Lang, n int) string {
	if n == 1 {
		return T(lang, "file_transfers_one", group3(1))
	}
	return T(lang, "file_transfers", group3(int64(n)))
}

// group3 writes n with thousands separators, as amounts are: 12,345.
func group3(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FilePage lists every transfer of a held transfer file, linked from its
// confirm page (ConfirmPage.FileList).
type FilePage struct {
	Common
	File *zengin.Summary
	// Back is the URL of the confirm page.
	Back string
}

func (FilePage) page() {}

type filePageView struct {
	layout
	File *fileView
	Back string
}

func filePageOf(p *FilePage) filePageView {
	v := filePageView{layout: layoutOf(&p.Common, "title_file"), Back: p.Back}
	v.File = fileOf(v.Lang, p.File, p.File == nil, 0, "")
	if u, err := url.Parse(p.Back); err != nil || u.Scheme != "" || u.Host != "" {
		// Only a path of the gateway's own: a link elsewhere is not a way back.
		v.Back = ""
	}
	return v
}

// FileJSON is the summary of a held transfer file for the JSON views of a
// held operation (the 401 otp_required answer, the confirm view): what the
// confirm page shows, in lang, with the amounts as numbers. nil without a
// file; an unreadable file is {"unreadable": true}.
func FileJSON(lang Lang, s *zengin.Summary, unreadable bool) map[string]any {
	if unreadable {
		return map[string]any{"unreadable": true, "message": T(lang, "file_unreadable")}
	}
	if s == nil {
		return nil
	}
	v := fileOf(lang, s, false, topTransfers, "")
	top := make([]map[string]any, 0, topTransfers)
	for _, t := range s.Top(topTransfers) {
		top = append(top, map[string]any{
			"bank_code": t.To.BankCode, "bank_name": t.To.BankName, "branch_code": t.To.BranchCode, "branch_name": t.To.BranchName,
			"account_type": t.To.Type, "account_number": t.To.Number, "recipient": t.Recipient, "amount": t.Amount,
		})
	}
	out := map[string]any{
		"format": s.Format, "type_code": s.TypeCode, "type": v.Type, "requester_code": s.RequesterCode, "requester_name": s.RequesterName,
		"date": s.Date, "count": s.Count(), "total": s.Total, "sha256": s.SHA256, "largest": top, "doubtful": s.Doubtful(),
	}
	if s.Doubtful() {
		codes := make([]string, 0, len(s.Problems))
		for _, p := range s.Problems {
			codes = append(codes, string(p.Code))
		}
		out["problem_codes"], out["problems"], out["doubt_message"] = codes, v.Problems, v.Doubt
	}
	return out
}
