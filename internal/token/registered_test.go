package token

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/audit"
)

func TestTrivialPIN(t *testing.T) {
	u := User{"S20240101", "taro1985"}
	for _, pin := range []string{
		"0000", "1111", "99999999", // one digit
		"1234", "3456", "12345678", "7890", "8901", "67890123", // runs up, 9 wrapping to 0
		"4321", "9876", "87654321", "3210", "1098", // runs down
		"1985", "2024", "0101", "20240101", "4010", // in a run of the IDs' digits ("20240101" holds "4010")
	} {
		if err := trivialPIN(pin, u); !errors.Is(err, ErrPINTrivial) {
			t.Errorf("%s: %v, want ErrPINTrivial", pin, err)
		}
	}
	for _, pin := range []string{"4829", "2468", "1357", "73915284", "5821", "1243", "19852", "2025", "0102"} {
		if err := trivialPIN(pin, u); err != nil {
			t.Errorf("%s: %v, want accepted", pin, err)
		}
	}
	// The digits of an ID count only where they stand together: "S1-9-8-5"
	// holds no run "1985".
	if err := trivialPIN("1985", User{"S1-9-8-5", "x"}); err != nil {
		t.Errorf("digits apart: %v", err)
	}
}

// Issue refuses a trivial PIN before it reads or mails anything.
func TestIssueRefusesTrivialPIN(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"S001", "U4821"}
	for _, pin := range []string{"1111", "1234", "4321", "4821"} {
		if _, err := e.m.Issue(ctx, u, "taro@example.jp", pin, linkBase, ""); !errors.Is(err, ErrPINTrivial) {
			t.Errorf("PIN %s: %v, want ErrPINTrivial", pin, err)
		}
	}
	if len(e.mail.events(u)) != 0 || e.linkCount() != 0 || e.status(u).State != None {
		t.Errorf("a refused issue changed something: mails %v, links %d", e.mail.events(u), e.linkCount())
	}
}

func TestEnrolAddressConfig(t *testing.T) {
	e := newEnv(t, Config{})
	m, err := New(e.db, e.sealer, e.mail, Config{})
	if err != nil || m.Config().EnrolAddress.Mode != RegisteredAddress {
		t.Fatalf("default: %v, mode %q; want registered", err, m.Config().EnrolAddress.Mode)
	}
	m, err = New(e.db, e.sealer, e.mail, Config{EnrolAddress: EnrolAddress{Mode: DomainAddress, Domains: []string{"DoCoMo.ne.jp"}}})
	if err != nil || !slices.Equal(m.Config().EnrolAddress.Domains, []string{"docomo.ne.jp"}) {
		t.Fatalf("domain: %v, %v", err, m.Config().EnrolAddress.Domains)
	}
	for _, tt := range []struct {
		a    EnrolAddress
		want string
	}{
		{EnrolAddress{Mode: DomainAddress}, "list the domains"},
		{EnrolAddress{Mode: DomainAddress, Domains: []string{"localhost"}}, `"localhost": want a mail domain`},
		{EnrolAddress{Mode: DomainAddress, Domains: []string{"a@b.jp"}}, "want a mail domain"},
		{EnrolAddress{Mode: DomainAddress, Domains: []string{".docomo.ne.jp"}}, "want a mail domain"},
		{EnrolAddress{Mode: AnyAddress, Domains: []string{"docomo.ne.jp"}}, "takes no domains"},
		{EnrolAddress{Domains: []string{"docomo.ne.jp"}}, "takes no domains"},
		{EnrolAddress{Mode: "anyone"}, `"anyone": want registered, domain or any`},
	} {
		if _, err := New(e.db, e.sealer, e.mail, Config{EnrolAddress: tt.a}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.a, err, tt.want)
		}
	}
}

// sent lists the notices mailed to u as "event to address".
func (f *fakeNotifier) sent(u User) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notices {
		if n.User == u {
			out = append(out, n.Event+" "+n.Email)
		}
	}
	return out
}

func (e *env) importCSV(csv string) ImportResult {
	e.t.Helper()
	res, err := e.m.ImportRegistered(ctx, strings.NewReader(csv), "hanako")
	if err != nil {
		e.t.Fatalf("ImportRegistered: %v", err)
	}
	return res
}

const customerFile = "service_id,user_id,email\n" +
	"S001,U001,taro.yamada@example.jp\n" +
	"S001,U002,hanako@example.jp\n" +
	"S001,,keiri@corp.example.co.jp\n"

// In the default mode a setup link goes only to an address the bank
// registered for the customer: a phisher who has the password cannot send
// it to themselves.
func TestIssueRegisteredAddress(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{EnrolAddress: EnrolAddress{Mode: RegisteredAddress}})
	u := User{"S001", "U001"}

	// Nothing registered yet: refused, audited, nothing mailed.
	if _, err := e.m.Issue(ctx, u, "taro.yamada@example.jp", "4829", linkBase, "198.51.100.9"); !errors.Is(err, ErrAddressNotRegistered) {
		t.Fatalf("before the import: %v, want ErrAddressNotRegistered", err)
	}
	e.importCSV(customerFile)
	if _, err := e.m.Issue(ctx, u, "attacker@evil.example", "4829", linkBase, "198.51.100.9"); !errors.Is(err, ErrAddressNotRegistered) {
		t.Fatalf("attacker's address: %v, want ErrAddressNotRegistered", err)
	}
	// Another customer's registered address is not this customer's.
	if _, err := e.m.Issue(ctx, u, "hanako@example.jp", "4829", linkBase, ""); !errors.Is(err, ErrAddressNotRegistered) {
		t.Fatalf("a colleague's address: %v, want ErrAddressNotRegistered", err)
	}
	// Nor is the company's: it is told of issues, never sent a link.
	if _, err := e.m.Issue(ctx, u, "keiri@corp.example.co.jp", "4829", linkBase, ""); !errors.Is(err, ErrAddressNotRegistered) {
		t.Fatalf("the company's address: %v, want ErrAddressNotRegistered", err)
	}
	if got := e.mail.sent(u); len(got) != 0 || e.linkCount() != 0 || e.status(u).State != None {
		t.Fatalf("refused issues mailed %v, stored %d links", got, e.linkCount())
	}
	refused := 0
	for _, a := range e.audit() {
		if a.Event == audit.Refused && strings.Contains(a.Detail, "not one the bank registered") {
			refused++
		}
	}
	if refused != 4 {
		t.Errorf("%d refusals audited, want 4", refused)
	}

	// The registered address, in other letter case: the setup mail goes to
	// it, the company's address is told.
	e.issue(u, "Taro.Yamada@example.jp", "4829")
	want := []string{"setup Taro.Yamada@example.jp", "issued keiri@corp.example.co.jp"}
	if got := e.mail.sent(u); !slices.Equal(got, want) {
		t.Errorf("mails %v, want %v", got, want)
	}
}

// Whatever the mode, the registered addresses of the customer and of the
// company hear of every issue: the company's first enrolment and every
// later one.
func TestIssueNotifiesRegistered(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{EnrolAddress: EnrolAddress{Mode: AnyAddress}})
	e.importCSV(customerFile + "S001,U001,taro-pc@example.jp\n")
	taro, hanako := User{"S001", "U001"}, User{"S001", "U002"}

	e.issue(taro, "attacker@evil.example", "4829")
	want := []string{"setup attacker@evil.example", "issued taro.yamada@example.jp", "issued taro-pc@example.jp", "issued keiri@corp.example.co.jp"}
	if got := e.mail.sent(taro); !slices.Equal(got, want) {
		t.Errorf("first enrolment: mails %v, want %v", got, want)
	}
	var detail string
	for _, a := range e.audit() {
		if a.Event == audit.Issued {
			detail = a.Detail
		}
	}
	if !strings.Contains(detail, "registered addresses ta***@example.jp, ta***@example.jp, ke***@corp.example.co.jp") {
		t.Errorf("audit detail %q does not name the notified addresses", detail)
	}

	// A later enrolment of another user of the company; her own
	// registered address gets the setup mail, so no notice of its own.
	e.issue(hanako, "hanako@example.jp", "5821")
	want = []string{"setup hanako@example.jp", "issued keiri@corp.example.co.jp"}
	if got := e.mail.sent(hanako); !slices.Equal(got, want) {
		t.Errorf("later enrolment: mails %v, want %v", got, want)
	}

	// Re-issue over taro's pending issue: the previous address is told
	// once, as before, and the registered ones again.
	e.issue(taro, "taro.yamada@example.jp", "4829")
	want = []string{"setup taro.yamada@example.jp", "issued attacker@evil.example", "issued taro-pc@example.jp", "issued keiri@corp.example.co.jp"}
	if got := e.mail.sent(taro)[4:]; !slices.Equal(got, want) {
		t.Errorf("re-issue: mails %v, want %v", got, want)
	}
}

// An issue whose notice to a registered address cannot be sent is not made.
func TestIssueRegisteredNoticeFails(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{EnrolAddress: EnrolAddress{Mode: AnyAddress}})
	e.importCSV(customerFile)
	u := User{"S001", "U002"}
	e.mail.setFail("issued", errors.New("relay down"))
	if _, err := e.m.Issue(ctx, u, "new@example.jp", "4829", linkBase, ""); !errors.Is(err, ErrMail) {
		t.Fatalf("Issue: %v, want ErrMail", err)
	}
	if st := e.status(u); st.State != None || e.linkCount() != 0 {
		t.Errorf("state %s, %d links: the issue was made", st.State, e.linkCount())
	}
}

func TestIssueDomainAddress(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{EnrolAddress: EnrolAddress{Mode: DomainAddress, Domains: []string{"docomo.ne.jp", "ezweb.ne.jp"}}})
	u := User{"S001", "U001"}
	for _, addr := range []string{"taro@evil.example", "taro@sub.docomo.ne.jp", "taro@docomo.ne.jp.evil.example"} {
		_, err := e.m.Issue(ctx, u, addr, "4829", linkBase, "")
		var de *AddressDomainError
		if !errors.Is(err, ErrAddressDomain) || !errors.As(err, &de) || !slices.Equal(de.Domains, []string{"docomo.ne.jp", "ezweb.ne.jp"}) {
			t.Errorf("%s: %v, want an AddressDomainError naming the domains", addr, err)
		}
	}
	e.issue(u, "taro@DoCoMo.ne.jp", "4829")
}

func TestImportRegistered(t *testing.T) {
	e := newEnv(t, Config{})
	res := e.importCSV("\uFEFF" + customerFile + "S001,U001,TARO.YAMADA@example.jp\n")
	if res != (ImportResult{Customers: 2, Companies: 1, Addresses: 3}) {
		t.Errorf("result %+v", res)
	}
	mine, company, err := e.m.Registered(ctx, User{"S001", "U001"})
	if err != nil || !slices.Equal(mine, []string{"taro.yamada@example.jp"}) || !slices.Equal(company, []string{"keiri@corp.example.co.jp"}) {
		t.Fatalf("registered %v, company %v, %v", mine, company, err)
	}
	// A customer in a later file has the later file's addresses; one not in
	// it keeps hers.
	e.importCSV("S001,U001,taro@new.example.jp\n")
	if mine, _, _ := e.m.Registered(ctx, User{"S001", "U001"}); !slices.Equal(mine, []string{"taro@new.example.jp"}) {
		t.Errorf("after the second import: %v", mine)
	}
	if mine, _, _ := e.m.Registered(ctx, User{"S001", "U002"}); !slices.Equal(mine, []string{"hanako@example.jp"}) {
		t.Errorf("a customer not in the second file: %v", mine)
	}
	n := 0
	for _, a := range e.audit() {
		if a.Event == RegisteredImported && a.Actor == "admin:hanako" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d import audit records, want 2", n)
	}

	// More customers than one transaction may write (the env runs etcd's
	// limits).
	var b strings.Builder
	for i := range 3*importBatch + 7 {
		fmt.Fprintf(&b, "S9,U%04d,u%d@example.jp\n", i, i)
	}
	if res := e.importCSV(b.String()); res.Customers != 3*importBatch+7 {
		t.Errorf("large file: %+v", res)
	}
	if mine, _, _ := e.m.Registered(ctx, User{"S9", fmt.Sprintf("U%04d", 3*importBatch+6)}); len(mine) != 1 {
		t.Errorf("the last customer of a large file: %v", mine)
	}
}

func TestImportRegisteredRefuses(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tt := range []struct {
		name, csv, want string
	}{
		{"two columns", "S001,U001\n", "want service_id,user_id,email"},
		{"four columns", "S001,U001,a@example.jp,x\n", "want service_id,user_id,email"},
		{"bad address on line 3", "service_id,user_id,email\nS001,U001,a@example.jp\nS001,U002,Hanako <h@example.jp>\n", "line 3"},
		{"no service", ",U001,a@example.jp\n", "line 1: the service or user ID"},
		{"control character", "S001,U\x01,a@example.jp\n", "line 1"},
		{"Shift_JIS", "S001,U001,a@example.jp,\x82\xa0\n", "not UTF-8"},
		{"empty", "service_id,user_id,email\n", "lists no address"},
	} {
		if _, err := e.m.ImportRegistered(ctx, strings.NewReader(tt.csv), "hanako"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := e.m.ImportRegistered(ctx, strings.NewReader(customerFile), ""); err == nil {
		t.Error("an import by nobody")
	}
	// Nothing of a refused file was written.
	if mine, company, _ := e.m.Registered(ctx, User{"S001", "U001"}); mine != nil || company != nil {
		t.Errorf("a refused file left %v %v", mine, company)
	}
}
