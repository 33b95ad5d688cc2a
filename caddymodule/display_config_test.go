package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/otpgate/otpgate/policy"
)

// The options of issue 11 read from the Caddyfile into the configuration
// the policy and the token lifecycle compile.
func TestUnmarshalCaddyfileDisplayOptions(t *testing.T) {
	g := new(Gateway)
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`otpgate {
		enrol_address domain docomo.ne.jp ezweb.ne.jp
		bank_table /etc/otpgate/banks.csv
		contact "0120-000-000（平日9:00～17:00）"
		rule transfer {
			path /transfer/execute
			title 振込 Transfer
			show to_bank 振込先金融機関 "Payee bank" bank
			show to_branch 支店 Branch branch
			show amount 金額 Amount yen
			show memo メモ
		}
		rule bulk_transfer bulk {
			path /bulk/execute
			show file 振込データ "Transfer file"
			show_file file zengin
			refuse_doubtful_files
		}
		rule bulk_transfer payroll {
			path /payroll/execute
			show_file upload csv "type=11 header_rows=1 bank_code=1 branch_code=2 account_number=3 recipient=4 amount=5" shift_jis
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if g.EnrolAddress != "domain" || strings.Join(g.EnrolDomains, " ") != "docomo.ne.jp ezweb.ne.jp" ||
		g.BankTable != "/etc/otpgate/banks.csv" || g.Contact != "0120-000-000（平日9:00～17:00）" {
		t.Errorf("gateway options: %q %q %q %q", g.EnrolAddress, g.EnrolDomains, g.BankTable, g.Contact)
	}
	tr, bulk, payroll := g.Rules[0], g.Rules[1], g.Rules[2]
	if tr.Title != "振込" || tr.TitleEn != "Transfer" {
		t.Errorf("title %q %q", tr.Title, tr.TitleEn)
	}
	formats := []string{}
	for _, f := range tr.Show {
		formats = append(formats, f.Format)
	}
	if strings.Join(formats, ",") != "bank,branch,yen," {
		t.Errorf("formats %q", formats)
	}
	if f := bulk.ShowFile; f == nil || *f != (policy.FileDisplay{Field: "file", Format: "zengin"}) || !bulk.RefuseDoubtfulFiles {
		t.Errorf("bulk: %+v %v", f, bulk.RefuseDoubtfulFiles)
	}
	if f := payroll.ShowFile; f == nil || f.Field != "upload" || f.Format != "csv" || !strings.HasPrefix(f.Columns, "type=11 ") || f.Charset != "shift_jis" || payroll.RefuseDoubtfulFiles {
		t.Errorf("payroll: %+v", f)
	}
	if _, err := policy.Compile(g.Rules); err != nil {
		t.Errorf("the rules do not compile: %v", err)
	}
}

func TestUnmarshalCaddyfileDisplayOptionErrors(t *testing.T) {
	for _, tt := range []struct{ name, block, want string }{
		{"enrol_address alone", "enrol_address", "enrol_address: want registered, any, or domain"},
		{"enrol_address domain without domains", "enrol_address domain", "domain followed by mail domains"},
		{"enrol_address any with a domain", "enrol_address any docomo.ne.jp", "want registered, any"},
		{"enrol_address unknown", "enrol_address everyone", "want registered, any"},
		{"contact twice", `contact a b`, "one value expected"},
		{"show with five values", "rule transfer {\npath /t\nshow a b c yen x\n}", "show wants a field name"},
		{"show_file without format", "rule transfer {\npath /t\nshow_file file\n}", "show_file wants"},
		{"show_file zengin with a map", "rule transfer {\npath /t\nshow_file file zengin \"type=21\"\n}", "show_file wants"},
		{"show_file csv without a map", "rule transfer {\npath /t\nshow_file file csv\n}", "show_file wants"},
		{"refuse_doubtful_files with a value", "rule transfer {\npath /t\nrefuse_doubtful_files yes\n}", "takes no value"},
		{"title without a name", "rule transfer {\npath /t\ntitle\n}", "title wants"},
	} {
		g := new(Gateway)
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("otpgate {\n" + tt.block + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	// A format the display does not know is refused when the rules compile
	// (at load, naming the rule and the field).
	g := new(Gateway)
	if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("otpgate {\nrule transfer {\npath /t\nshow amount 金額 Amount money\n}\n}")); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Compile(g.Rules); err == nil || !strings.Contains(err.Error(), `shown field "amount": unknown display format "money"`) {
		t.Errorf("unknown format: %v", err)
	}
}
