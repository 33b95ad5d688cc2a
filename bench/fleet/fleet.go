// Package fleet is a large customer base for the benchmarks (package
// bench's main) and the campaigns (caddymodule/campaign_test.go): customers
// seeded straight into a gateway database, each with a secret of its own,
// the codes of their token apps, and a bank they can all log in to.
//
// The demo bank knows three users. Fleet customers log in to it through
// Bank, which hands the bank's first demo user's password check a fleet
// login, so that every fleet customer gets a session cookie of their own
// from the real demo bank, and the gateway in front binds that cookie to
// the fleet identity it read from the login form. The bank's ledger then
// names the demo user for every fleet operation; the load generators tell
// operations apart by a reference they put in to_account.
package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/token"
)

// Password is every fleet customer's bank password.
const Password = "fleet"

// servicePrefix starts every fleet service ID, so Bank tells fleet logins
// from the demo users' own.
const servicePrefix = "F"

// perService is how many fleet users share a service (company) ID.
const perService = 50

// Customer is one seeded customer.
type Customer struct {
	Service, User string
	Secret        []byte
	// Cookie is the bank session cookie (JSESSIONID value) once logged in.
	Cookie string

	mu       sync.Mutex
	lastStep int64
}

// Name returns the i-th fleet customer's service and user IDs.
func Name(i int) (service, user string) {
	return fmt.Sprintf("%s%05d", servicePrefix, i/perService), fmt.Sprintf("U%07d", i)
}

// Seed writes n customers with fresh random secrets into the bbolt file at
// path (which no process may hold open), sealed under key as a gateway
// configured with that key seals them, and returns them.
func Seed(ctx context.Context, path string, key []byte, n int) ([]*Customer, error) {
	db, err := boltstore.Open(path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	cs, err := SeedStore(ctx, db, key, 0, n)
	if err != nil {
		return nil, err
	}
	return cs, db.Close()
}

// SeedStore writes n customers, named from the offset-th on, with fresh
// random secrets into s, sealed under key, and returns them.
func SeedStore(ctx context.Context, s store.Store, key []byte, offset, n int) ([]*Customer, error) {
	sealer, err := seal.New(key)
	if err != nil {
		return nil, err
	}
	cs := make([]*Customer, n)
	users := make([]token.User, n)
	secrets := make([][]byte, n)
	for i := range cs {
		sv, u := Name(offset + i)
		secret := make([]byte, 20)
		rand.Read(secret)
		cs[i] = &Customer{Service: sv, User: u, Secret: secret}
		users[i], secrets[i] = token.User{Service: sv, ID: u}, secret
	}
	if err := token.SeedActive(ctx, s, sealer, users, secrets, time.Now(), 365*24*time.Hour); err != nil {
		return nil, err
	}
	return cs, nil
}

// Loadavg is the machine's load average (1, 5 and 15 minutes), for the
// report: the benchmarks share the CPUs with whatever else runs.
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Logf writes a progress line, with the time, to standard error.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Code is RFC 6238 (HMAC-SHA1, 6 digits) at the 60-second step.
func Code(secret []byte, step int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	h := m.Sum(nil)
	o := h[len(h)-1] & 0xf
	v := binary.BigEndian.Uint32(h[o:o+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

// Step is the 60-second time step of t.
func Step(t time.Time) int64 { return t.Unix() / 60 }

// NextCode spends the customer's next time step and returns it and its
// code: the current step, or the next one if the current one is spent, as
// the gateway's window (skew 1) accepts either whichever side of a step
// boundary the check lands. ok is false when both are spent: the customer
// must wait for the clock.
func (c *Customer) NextCode(now time.Time) (code string, step int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	step = max(Step(now), c.lastStep+1)
	if step > Step(now)+1 {
		return "", 0, false
	}
	c.lastStep = step
	return Code(c.Secret, step), step, true
}

// Ready reports whether NextCode would give a code at now.
func (c *Customer) Ready(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastStep < Step(now)+1
}

// Bank serves bank, letting fleet customers log in as its first demo user
// (S001/U001 with password "demo"): each login still gets a fresh session
// of the demo bank's own. Every other request reaches bank unchanged.
func Bank(bank http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.EqualFold(strings.TrimSuffix(r.URL.Path, "/"), "/login") &&
			strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			if err != nil {
				http.Error(w, "reading the login body: "+err.Error(), http.StatusBadRequest)
				return
			}
			form, err := url.ParseQuery(string(body))
			if err == nil && strings.HasPrefix(form.Get("service_id"), servicePrefix) && form.Get("password") == Password {
				body = []byte(url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"demo"}}.Encode())
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
		bank.ServeHTTP(w, r)
	})
}

// Login logs c in at the bank through the gateway at base with client (which
// must not follow redirects) and keeps the session cookie.
func (c *Customer) Login(ctx context.Context, client *http.Client, base string) error {
	form := url.Values{"service_id": {c.Service}, "user_id": {c.User}, "password": {Password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	for _, ck := range res.Cookies() {
		if ck.Name == "JSESSIONID" && ck.Value != "" {
			c.Cookie = ck.Value
			return nil
		}
	}
	return fmt.Errorf("login of %s/%s: status %d without a session cookie", c.Service, c.User, res.StatusCode)
}

// LoginAll logs in every customer of cs, par at a time, and stops at the
// first failure or when ctx ends.
func LoginAll(ctx context.Context, cs []*Customer, base string, par int) error {
	client := &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: par},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *Customer)
	errs := make(chan error, par)
	var wg sync.WaitGroup
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if err := c.Login(ctx, client, base); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for _, c := range cs {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}
