package demobank

import "strings"

// Ledger operation names, as the gateway's rules name the protected operations.
const (
	opTransfer     = "transfer"
	opBillPayment  = "bill_payment"
	opBulkTransfer = "bulk_transfer"
	opUserChange   = "user_change"
)

// field is one input of an operation's form. Every field is required.
type field struct {
	Name  string
	Label string
	Type  string // "text", "email", "tel" or "file"
	Hint  string
}

// operation is one form page and the endpoint that executes it.
type operation struct {
	op     string // ledger Op
	kind   string // recorded as Params["kind"] when set
	page   string // form page path
	action string // executing endpoint path
	title  string
	blurb  string // menu description
	fields []field
	// sample, if set, is the path of a sample transfer file for the form:
	// a Zengin file a demo visitor can upload.
	sample string
}

// The accessors below are for the templates, which cannot read unexported fields.

func (op *operation) Page() string    { return op.page }
func (op *operation) Action() string  { return op.action }
func (op *operation) Title() string   { return op.title }
func (op *operation) Blurb() string   { return op.blurb }
func (op *operation) Fields() []field { return op.fields }
func (op *operation) Sample() string  { return op.sample }

// Multipart tells the form template to post as multipart/form-data.
func (op *operation) Multipart() bool {
	for _, f := range op.fields {
		if f.Type == "file" {
			return true
		}
	}
	return false
}

var operations = []*operation{
	{
		op: opTransfer, page: "/transfer", action: "/transfer/execute",
		title: "振込", blurb: "都度指定方式による振替・振込",
		fields: []field{
			{Name: "to_bank", Label: "振込先金融機関", Type: "text", Hint: "例: みずほ銀行 東京営業部"},
			{Name: "to_account", Label: "振込先口座", Type: "text", Hint: "例: 普通 1234567"},
			{Name: "amount", Label: "振込金額（円）", Type: "text", Hint: "半角数字"},
		},
	},
	{
		op: opBillPayment, page: "/payment", action: "/payment/execute",
		title: "税金・各種料金の払込", blurb: "Pay-easy（ペイジー）による払込",
		fields: []field{
			{Name: "payee", Label: "収納機関", Type: "text", Hint: "例: 東京電力エナジーパートナー"},
			{Name: "amount", Label: "払込金額（円）", Type: "text", Hint: "半角数字"},
		},
	},
	{
		op: opBulkTransfer, kind: "bulk", page: "/bulk", action: "/bulk/execute", sample: "/bulk/sample.txt",
		title: "総合振込", blurb: "振込データファイルによる一括振込",
		fields: []field{
			{Name: "file", Label: "振込データファイル", Type: "file", Hint: "全銀協フォーマット（CSV可）"},
		},
	},
	{
		op: opBulkTransfer, kind: "payroll", page: "/payroll", action: "/payroll/execute", sample: "/payroll/sample.txt",
		title: "給与・賞与振込", blurb: "給与・賞与データファイルによる振込",
		fields: []field{
			{Name: "file", Label: "給与・賞与データファイル", Type: "file", Hint: "全銀協フォーマット（CSV可）"},
		},
	},
	{
		op: opUserChange, page: "/profile", action: "/profile/update",
		title: "利用者登録情報変更", blurb: "メールアドレス・電話番号の変更",
		fields: []field{
			{Name: "email", Label: "メールアドレス", Type: "email"},
			{Name: "phone", Label: "電話番号", Type: "tel", Hint: "例: 03-1234-5678"},
		},
	},
}

var opsByPage, opsByAction = func() (map[string]*operation, map[string]*operation) {
	pages, actions := map[string]*operation{}, map[string]*operation{}
	for _, op := range operations {
		pages[op.page] = op
		actions[op.action] = op
	}
	return pages, actions
}()

// missing lists the labels of required fields the request lacks. A value of only
// spaces counts as missing, as the legacy forms' server-side checks had it.
func (op *operation) missing(ps *params) []string {
	var out []string
	for _, f := range op.fields {
		if f.Type == "file" {
			if _, ok := ps.uploads[f.Name]; !ok {
				out = append(out, f.Label)
			}
			continue
		}
		if strings.TrimSpace(ps.get(f.Name)) == "" {
			out = append(out, f.Label)
		}
	}
	return out
}

// row is one line of a completion page.
type row struct{ Label, Value string }

func (op *operation) rows(p map[string]string) []row {
	var out []row
	if op.kind != "" {
		out = append(out, row{"種別", op.title})
	}
	for _, f := range op.fields {
		if f.Type == "file" {
			out = append(out,
				row{f.Label, p[f.Name]},
				row{"ファイルサイズ（バイト）", p[f.Name+"_size"]},
				row{"SHA-256", p[f.Name+"_sha256"]},
			)
			continue
		}
		out = append(out, row{f.Label, p[f.Name]})
	}
	return out
}
