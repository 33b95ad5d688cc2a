package token

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// Enrolment a phished password cannot take over.
//
// Issue proves only that the caller has the customer's bank session, which a
// phishing site has too. So the setup link, which binds a phone, goes only to
// an address the bank vouches for: by default one the bank registered for
// the customer (imported from its customer file with ImportRegistered); or,
// if the bank chooses, any address at the domains it lists; or any address
// at all. Whatever the choice, every issue is announced to the addresses the
// bank registered for the customer and for their company, so that a
// customer whose password was stolen hears of it even where the link went
// elsewhere. And the activation PIN, the one secret the phone needs besides
// the link, refuses values a phisher guesses first.

// AddressMode says which mail addresses a setup link may be sent to.
type AddressMode string

// The modes. The zero value is RegisteredAddress.
const (
	// RegisteredAddress: only an address the bank registered for the
	// customer (ImportRegistered). A customer without one is told to ask
	// the bank. The default.
	RegisteredAddress AddressMode = "registered"
	// DomainAddress: any address at one of EnrolAddress.Domains (the
	// mobile carriers' domains, the bank's corporate customers' domains).
	DomainAddress AddressMode = "domain"
	// AnyAddress: any address, as the service being reproduced does; the
	// notices to the registered addresses are then the only safeguard.
	AnyAddress AddressMode = "any"
)

// EnrolAddress is the bank's choice of the addresses a setup link may be
// sent to (Config.EnrolAddress).
type EnrolAddress struct {
	Mode AddressMode
	// Domains, for DomainAddress: an address matches a domain exactly,
	// ignoring case; subdomains must be listed ("docomo.ne.jp",
	// "ezweb.ne.jp").
	Domains []string
}

// check validates the choice and writes domains in lower case.
func (e *EnrolAddress) check() error {
	if e.Mode == "" {
		e.Mode = RegisteredAddress
	}
	switch e.Mode {
	case RegisteredAddress, AnyAddress:
		if len(e.Domains) > 0 {
			return fmt.Errorf("enrol_address %s takes no domains (use enrol_address domain <domain...>)", e.Mode)
		}
	case DomainAddress:
		if len(e.Domains) == 0 {
			return errors.New("enrol_address domain: list the domains, such as docomo.ne.jp")
		}
		ds := make([]string, len(e.Domains))
		for i, d := range e.Domains {
			d = strings.ToLower(d)
			if !validEmail("x@"+d) || strings.HasPrefix(d, ".") || !strings.Contains(d, ".") {
				return fmt.Errorf("enrol_address domain %q: want a mail domain such as docomo.ne.jp", e.Domains[i])
			}
			ds[i] = d
		}
		e.Domains = ds
	default:
		return fmt.Errorf("enrol_address %q: want registered, domain or any", e.Mode)
	}
	return nil
}

// Errors of Issue about the address and the PIN. Each says what to do.
var (
	// ErrAddressNotRegistered: RegisteredAddress and the address is not one
	// the bank registered for the customer (or none is registered).
	ErrAddressNotRegistered = errors.New("otpgate: the mail address is not one the bank registered for you; enter the address registered with the bank, or ask the bank to register it")
	// ErrAddressDomain: DomainAddress and the address is at another
	// domain. An *AddressDomainError names the domains.
	ErrAddressDomain = errors.New("otpgate: the setup mail cannot be sent to an address at this domain")
	// ErrPINTrivial: the activation PIN is one a phisher tries first.
	ErrPINTrivial = errors.New("otpgate: the activation PIN is too easy to guess (one digit repeated, a run such as 1234 or 4321, or digits of your service or user ID); choose another")
)

// AddressDomainError is ErrAddressDomain with the domains the bank accepts,
// for the page to list.
type AddressDomainError struct{ Domains []string }

func (e *AddressDomainError) Error() string {
	return ErrAddressDomain.Error() + "; use an address at " + strings.Join(e.Domains, ", ")
}

// Is makes errors.Is(err, ErrAddressDomain) work.
func (e *AddressDomainError) Is(target error) bool { return target == ErrAddressDomain }

// trivialPIN refuses a PIN made of one digit ("1111"), a run up or down
// ("1234", "4321", "7890", "3210", wrapping 9 and 0 as keypads and
// phisher lists do), or found among the digits of the service or user ID,
// which whoever has the login has too.
func trivialPIN(pin string, u User) error {
	same, up, down := true, true, true
	for i := 1; i < len(pin); i++ {
		a, b := pin[i-1]-'0', pin[i]-'0'
		same = same && a == b
		up = up && b == (a+1)%10
		down = down && b == (a+9)%10
	}
	if same || up || down {
		return ErrPINTrivial
	}
	for _, id := range []string{u.Service, u.ID} {
		for _, run := range digitRuns(id) {
			if strings.Contains(run, pin) {
				return ErrPINTrivial
			}
		}
	}
	return nil
}

// digitRuns returns the runs of ASCII digits in s.
func digitRuns(s string) []string {
	var runs []string
	start := -1
	for i := 0; i <= len(s); i++ {
		digit := i < len(s) && '0' <= s[i] && s[i] <= '9'
		switch {
		case digit && start < 0:
			start = i
		case !digit && start >= 0:
			runs = append(runs, s[start:i])
			start = -1
		}
	}
	return runs
}

// registeredRecord is what store.Registered holds for a customer (key:
// User.key()) or for a company (key: the service ID and the separator,
// with no user ID): the addresses the bank registered.
type registeredRecord struct {
	Emails   []string  `json:"emails"`
	Imported time.Time `json:"imported"`
	By       string    `json:"by"`
}

// companyKey is the key of a company's own addresses: no user ID is empty,
// so it names no customer.
func companyKey(service string) string { return User{Service: service}.key() }

func loadRegistered(tx store.Tx, key string) ([]string, error) {
	v, err := tx.Get(store.Registered, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r registeredRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding registered addresses: %w", err)
	}
	return r.Emails, nil
}

// enrolAddresses decides, in Issue's read, whether the setup link may go
// to email, and returns the addresses that must be told of the issue: the
// customer's and the company's registered addresses other than email (which
// gets the setup mail itself) and prev (which Issue tells already).
func (m *Manager) enrolAddresses(tx store.Tx, u User, email, prev string) (notify []string, refusal, err error) {
	mine, err := loadRegistered(tx, u.key())
	if err != nil {
		return nil, nil, err
	}
	company, err := loadRegistered(tx, companyKey(u.Service))
	if err != nil {
		return nil, nil, err
	}
	switch a := m.cfg.EnrolAddress; a.Mode {
	case AnyAddress:
	case DomainAddress:
		_, domain, _ := strings.Cut(email, "@")
		if !slices.Contains(a.Domains, strings.ToLower(domain)) {
			refusal = &AddressDomainError{Domains: a.Domains}
		}
	default: // RegisteredAddress; defaults() allows no other
		if !slices.ContainsFunc(mine, func(r string) bool { return strings.EqualFold(r, email) }) {
			refusal = ErrAddressNotRegistered
		}
	}
	for _, addr := range append(mine, company...) {
		if strings.EqualFold(addr, email) || strings.EqualFold(addr, prev) ||
			slices.ContainsFunc(notify, func(n string) bool { return strings.EqualFold(n, addr) }) {
			continue
		}
		notify = append(notify, addr)
	}
	return notify, refusal, nil
}

// notifyRegistered tells the registered addresses of an issue, at once
// and before anything is written, like the notice to the previous address:
// an issue that cannot be announced is not made.
func (m *Manager) notifyRegistered(ctx context.Context, u User, to []string, now time.Time) (string, error) {
	var masked []string
	for _, addr := range to {
		if err := m.notifier.Notify(ctx, Notice{Event: "issued", User: u, Email: addr, At: now}); err != nil {
			return "", fmt.Errorf("%w: notice to a registered address: %w", ErrMail, err)
		}
		masked = append(masked, MaskEmail(addr))
	}
	if len(masked) == 0 {
		return "", nil
	}
	return "; issue notice mailed to the registered addresses " + strings.Join(masked, ", "), nil
}

// RegisteredImported is the audit event of an import of registered
// addresses.
const RegisteredImported audit.Event = "registered_imported"

// ImportResult says what ImportRegistered did.
type ImportResult struct {
	Customers int // customers whose addresses were replaced
	Companies int // companies whose addresses were replaced
	Addresses int
}

// maxImportBytes bounds a customer file: a million customers of 100 bytes.
const maxImportBytes = 100 << 20

// importBatch bounds the keys one Update writes, within store.MaxTxnKeys.
const importBatch = 100

// ImportRegistered reads the bank's customer file and records, for each
// customer in it, the mail addresses the bank registered: the only ones a
// setup link goes to under RegisteredAddress, and the ones told of every
// issue. The file is CSV, UTF-8 (a byte-order mark is ignored), one address
// a line:
//
//	service_id,user_id,email
//	S001,U001,taro.yamada@example.jp
//	S001,,keiri@example.co.jp
//
// A line with no user ID registers an address of the company (service):
// told of every issue of every user of the company, never sent a setup
// link for being that. A first line naming the columns is skipped. A
// customer or company listed in the file has exactly the file's addresses
// afterwards; those not listed keep theirs.
//
// The whole file is checked before anything is written, and any wrong line
// fails it, naming the line: the file is the bank's word on who may enrol.
// It is then written in batches; a store failure midway leaves the earlier
// batches written, and importing the same file again completes it.
func (m *Manager) ImportRegistered(ctx context.Context, r io.Reader, by string) (ImportResult, error) {
	if by == "" {
		return ImportResult{}, errors.New("otpgate: say who imports the file (by)")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return ImportResult{}, fmt.Errorf("otpgate: reading the customer file: %w", err)
	}
	if len(data) > maxImportBytes {
		return ImportResult{}, fmt.Errorf("otpgate: the customer file is larger than %d MiB; split it", maxImportBytes>>20)
	}
	byKey, order, res, err := parseRegistered(data)
	if err != nil {
		return ImportResult{}, err
	}
	now := m.Now()
	for start := 0; start < len(order); start += importBatch {
		batch := order[start:min(start+importBatch, len(order))]
		err := m.store.Update(ctx, func(tx store.Tx) error {
			for _, k := range batch {
				b, err := json.Marshal(registeredRecord{Emails: byKey[k], Imported: now, By: by})
				if err != nil {
					return err
				}
				if err := tx.Put(store.Registered, k, b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return ImportResult{}, fmt.Errorf("otpgate: writing registered addresses (%d of %d written; import the file again): %w", start, len(order), err)
		}
	}
	detail := fmt.Sprintf("%d customers, %d companies, %d addresses", res.Customers, res.Companies, res.Addresses)
	err = m.store.Update(ctx, func(tx store.Tx) error {
		return audit.Append(tx, audit.Record{Time: now, Event: RegisteredImported, Actor: actorAdmin + by, Detail: detail})
	})
	return res, err
}

// parseRegistered reads a customer file into addresses by store key, in
// the order of first appearance.
func parseRegistered(data []byte) (map[string][]string, []string, ImportResult, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if !utf8.Valid(data) {
		return nil, nil, ImportResult{}, errors.New("otpgate: the customer file is not UTF-8; save it as UTF-8 CSV")
	}
	cr := csv.NewReader(bufio.NewReader(bytes.NewReader(data)))
	cr.FieldsPerRecord = 3
	cr.ReuseRecord = true
	byKey := make(map[string][]string)
	var order []string
	var res ImportResult
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, nil, res, fmt.Errorf("otpgate: customer file: %v; want service_id,user_id,email on every line", err)
		}
		service, user, email := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
		if first && strings.EqualFold(service, "service_id") {
			continue
		}
		u := User{Service: service, ID: user}
		if user == "" {
			u.ID = "company" // checked as a user ID would be
		}
		if !u.valid() {
			return nil, nil, res, fmt.Errorf("otpgate: customer file line %d: the service or user ID is empty, too long or holds control characters", line)
		}
		if !validEmail(email) {
			return nil, nil, res, fmt.Errorf("otpgate: customer file line %d: %q is not a plain mail address", line, email)
		}
		key := User{Service: service, ID: user}.key()
		if _, seen := byKey[key]; !seen {
			order = append(order, key)
			if user == "" {
				res.Companies++
			} else {
				res.Customers++
			}
		}
		if !slices.ContainsFunc(byKey[key], func(e string) bool { return strings.EqualFold(e, email) }) {
			byKey[key] = append(byKey[key], email)
			res.Addresses++
		}
	}
	if len(order) == 0 {
		return nil, nil, res, errors.New("otpgate: the customer file lists no address")
	}
	return byKey, order, res, nil
}

// Registered returns the addresses the bank registered for a customer and,
// separately, for their company.
func (m *Manager) Registered(ctx context.Context, u User) (mine, company []string, err error) {
	err = m.store.View(ctx, func(tx store.Tx) error {
		var err error
		if mine, err = loadRegistered(tx, u.key()); err != nil {
			return err
		}
		company, err = loadRegistered(tx, companyKey(u.Service))
		return err
	})
	return mine, company, err
}
