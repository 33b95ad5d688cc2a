package caddymodule

// Many gateways, one store: two otpgate processes, each from
// Caddyfile.example with its database line replaced by "store etcd { … }",
// in front of one demo bank and sharing a real 3-member etcd cluster on
// loopback (etcdtest: each member a process of its own, so that one can be
// killed with SIGKILL). Everything that makes the gateway safe holds across
// the nodes, through etcd failures, and the background work runs on one
// node at a time and moves when that node dies.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/otpgate/otpgate/bench/fleet"
	"github.com/otpgate/otpgate/internal/demobank"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/store/etcdstore"
	"github.com/otpgate/otpgate/internal/store/etcdstore/etcdtest"
	"github.com/otpgate/otpgate/internal/token"
)

// The two nodes' ports: OTPGATE_TEST_HTTP_PORT and 100 above it.
var (
	nodeAPort = gatewayPort
	nodeBPort = gatewayPort + 100
)

// multiNode is the cluster, the two gateway processes and the customers.
type multiNode struct {
	t       *testing.T
	etcd    *etcdtest.Cluster
	prefix  string
	key     []byte
	bank    *demobank.Bank
	nodes   [2]*gatewayProcess
	dirs    [2]string
	cs      []*fleet.Customer
	next    atomic.Int64 // the next customer not yet used by a subtest
	cl      *http.Client
	started time.Time
}

const multiNodeCustomers = 900

// multiNodeSlowBank is how late the bank answers a request whose query
// says slow.
const multiNodeSlowBank = 2 * time.Second

// etcdStoreBlock is the store line that replaces Caddyfile.example's
// database line, with what the tests shorten: a request fails after a
// second, the lead outlives a dead node by 2 s, the sweeper runs every
// second.
func etcdStoreBlock(endpoints []string, prefix string) string {
	return fmt.Sprintf("store etcd {\n\t\t\tendpoints %s\n\t\t\tprefix %s\n\t\t\trequest_timeout 1s\n\t\t\telection_ttl 2s\n\t\t}\n\t\tsweep_interval 1s",
		strings.Join(endpoints, " "), prefix)
}

func startMultiNode(t *testing.T) *multiNode {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-node test: an etcd cluster and two gateway processes")
	}
	m := &multiNode{t: t, prefix: "/otpgate-multinode/", started: time.Now()}
	bin, err := buildOtpgate()
	if err != nil {
		t.Fatal(err)
	}
	m.etcd, err = etcdtest.Start(t.TempDir(), etcdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.etcd.Close)
	t.Logf("etcd cluster of 3 up after %v", time.Since(m.started).Round(time.Millisecond))

	var keyText string
	m.key, keyText = randomKey(t)
	m.cs = m.seed(0, multiNodeCustomers, false, 365*24*time.Hour)

	// The demo bank behind the fleet login; a request whose query says
	// slow is answered two seconds late, as a bank that takes its time to
	// book a transfer.
	m.bank = demobank.New()
	fleetBank := fleet.Bank(m.bank)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("slow") {
			time.Sleep(multiNodeSlowBank)
		}
		fleetBank.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	bankAddr := strings.TrimPrefix(srv.URL, "http://")
	for i, port := range []int{nodeAPort, nodeBPort} {
		m.dirs[i] = t.TempDir()
		// The admin API on a socket of the node's own: the in-process
		// harness of the other tests holds the admin port.
		cfg := exampleConfig(t, "admin unix/"+filepath.Join(m.dirs[i], "admin.sock"), port, m.dirs[i], keyText, bankAddr)
		db := "database " + filepath.Join(m.dirs[i], "otpgate.db")
		if !strings.Contains(cfg, db) {
			t.Fatalf("the example's database line is not %q", db)
		}
		cfg = strings.Replace(cfg, db, etcdStoreBlock(m.etcd.Endpoints(), m.prefix), 1)
		path := filepath.Join(m.dirs[i], "Caddyfile")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		m.nodes[i] = &gatewayProcess{t: t, bin: bin, config: path, dir: m.dirs[i], base: fmt.Sprintf("http://127.0.0.1:%d", port)}
		m.nodes[i].start()
		t.Cleanup(m.nodes[i].kill)
	}
	t.Logf("two gateways up after %v", time.Since(m.started).Round(time.Millisecond))
	// Half the customers log in through each node.
	half := len(m.cs) / 2
	if err := fleet.LoginAll(context.Background(), m.cs[:half], m.nodes[0].base, 8); err != nil {
		t.Fatal(err)
	}
	if err := fleet.LoginAll(context.Background(), m.cs[half:], m.nodes[1].base, 8); err != nil {
		t.Fatal(err)
	}
	m.cl = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	t.Cleanup(m.cl.CloseIdleConnections)
	t.Logf("%d customers logged in after %v", len(m.cs), time.Since(m.started).Round(time.Millisecond))
	return m
}

// open opens the cluster's store as the gateways do.
func (m *multiNode) open() *etcdstore.Store {
	m.t.Helper()
	s, reachErr, err := etcdstore.Open(etcdstore.Options{Endpoints: m.etcd.Endpoints(), Prefix: m.prefix})
	if err != nil || reachErr != nil {
		m.t.Fatalf("opening the store: %v %v", err, reachErr)
	}
	return s
}

// seed writes n active tokens straight into etcd, fleet customers offset
// to offset+n-1, valid for validity; withMail gives each the address
// reminderAddress.
func (m *multiNode) seed(offset, n int, withMail bool, validity time.Duration) []*fleet.Customer {
	m.t.Helper()
	s := m.open()
	defer s.Close()
	sealer, err := seal.New(m.key)
	if err != nil {
		m.t.Fatal(err)
	}
	cs := make([]*fleet.Customer, n)
	users := make([]token.User, n)
	secrets := make([][]byte, n)
	for i := range n {
		sv, u := fleet.Name(offset + i)
		secret := make([]byte, 20)
		rand.Read(secret)
		cs[i] = &fleet.Customer{Service: sv, User: u, Secret: secret}
		users[i], secrets[i] = token.User{Service: sv, ID: u}, secret
	}
	ctx := context.Background()
	if err := token.SeedActive(ctx, s, sealer, users, secrets, time.Now(), validity); err != nil {
		m.t.Fatal(err)
	}
	if !withMail {
		return cs
	}
	for _, c := range cs {
		key := c.Service + "\x1f" + c.User
		err := s.Update(ctx, func(tx store.Tx) error {
			v, err := tx.Get(store.Tokens, key)
			if err != nil {
				return err
			}
			var r token.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			r.Email = reminderAddress(c)
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			return tx.Put(store.Tokens, key, b)
		})
		if err != nil {
			m.t.Fatal(err)
		}
	}
	return cs
}

func reminderAddress(c *fleet.Customer) string { return strings.ToLower(c.User) + "@fleet.example" }

// take returns n customers no earlier subtest used.
func (m *multiNode) take(n int) []*fleet.Customer {
	m.t.Helper()
	end := int(m.next.Add(int64(n)))
	if end > len(m.cs) {
		m.t.Fatalf("the %d seeded customers are used up", len(m.cs))
	}
	return m.cs[end-n : end]
}

// hold sends a transfer with reference ref through node and returns the
// status and the challenge.
func (m *multiNode) hold(node int, c *fleet.Customer, ref string) (int, string) {
	form := url.Values{"to_bank": {ref}, "to_account": {"1 1234567"}, "amount": {"1000"}}
	req, _ := http.NewRequest(http.MethodPost, m.nodes[node].base+"/transfer/execute", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	res, err := m.cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var held struct{ Challenge string }
	json.NewDecoder(res.Body).Decode(&held)
	return res.StatusCode, held.Challenge
}

// confirm sends code for challenge through node; it returns the status and
// the JSON error, if any.
func (m *multiNode) confirm(node int, c *fleet.Customer, challenge, code string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, m.nodes[node].base+"/.otpgate/confirm/"+challenge, strings.NewReader(`{"otp":"`+code+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	res, err := m.cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var e struct{ Error string }
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	json.Unmarshal(body, &e)
	return res.StatusCode, e.Error
}

// get fetches path through node with c's session.
func (m *multiNode) get(node int, c *fleet.Customer, path string) int {
	req, _ := http.NewRequest(http.MethodGet, m.nodes[node].base+path, nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	res, err := m.cl.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// executed counts the bank's executions of each reference.
func (m *multiNode) executed() map[string]int {
	out := map[string]int{}
	for _, e := range m.bank.Ledger() {
		out[e.Params["to_bank"]]++
	}
	return out
}

func (m *multiNode) mustCode(c *fleet.Customer) string {
	m.t.Helper()
	code, _, ok := c.NextCode(time.Now())
	if !ok {
		m.t.Fatalf("%s/%s has no unspent code", c.Service, c.User)
	}
	return code
}

func TestMultiNodeEtcd(t *testing.T) {
	m := startMultiNode(t)
	defer func() { t.Logf("the whole multi-node test took %v", time.Since(m.started).Round(time.Millisecond)) }()

	t.Run("SessionBoundOnAKnownOnB", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0] // logged in through node A
		if st, ch := m.hold(1, c, "MS0001"); st != http.StatusUnauthorized || ch == "" {
			t.Fatalf("a hold on B with the session bound on A: %d; want 401 with a challenge", st)
		}
		stranger := &fleet.Customer{Cookie: "not-bound-anywhere"}
		if st, _ := m.hold(1, stranger, "MS0002"); st != http.StatusForbidden {
			t.Errorf("a hold on B with an unbound session: %d, want 403", st)
		}
	})

	t.Run("PausedOnAConfirmsOnB", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		st, ch := m.hold(0, c, "MP0001")
		if st != http.StatusUnauthorized {
			t.Fatalf("hold on A: %d", st)
		}
		if st, e := m.confirm(1, c, ch, m.mustCode(c)); st != http.StatusOK {
			t.Fatalf("confirm on B: %d %s", st, e)
		}
		if n := m.executed()["MP0001"]; n != 1 {
			t.Errorf("executed %d times", n)
		}
	})

	// A login on B that names the session of a release in flight on A
	// waits for the bank's answer to the release (gate.SessionLocks, held
	// in etcd): on a bank that keeps session IDs at login, one sent at once
	// could switch the session under the transfer.
	t.Run("LoginOnBWaitsForAReleaseOnA", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		form := url.Values{"to_bank": {"MW0001"}, "to_account": {"1 1234567"}, "amount": {"1000"}}
		req, _ := http.NewRequest(http.MethodPost, m.nodes[0].base+"/transfer/execute?slow=1", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
		res, err := m.cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var held struct{ Challenge string }
		json.NewDecoder(res.Body).Decode(&held)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || held.Challenge == "" {
			t.Fatalf("hold on A: %d; want 401 with a challenge", res.StatusCode)
		}
		code := m.mustCode(c)
		released := make(chan time.Time, 1)
		go func() {
			if st, e := m.confirm(0, c, held.Challenge, code); st != http.StatusOK {
				t.Errorf("confirm on A: %d %s", st, e)
			}
			released <- time.Now()
		}()
		time.Sleep(500 * time.Millisecond) // the release is at the bank now
		login := url.Values{"service_id": {c.Service}, "user_id": {c.User}, "password": {fleet.Password}}
		req, _ = http.NewRequest(http.MethodPost, m.nodes[1].base+"/login", strings.NewReader(login.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
		start := time.Now()
		noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err = noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		waited := time.Since(start)
		releasedAt := <-released
		t.Logf("the login on B answered %d after %v, %v after the release on A was answered", res.StatusCode, waited.Round(time.Millisecond), time.Since(releasedAt).Round(time.Millisecond))
		if waited < multiNodeSlowBank/2 {
			t.Errorf("the login on B was answered after %v, while the release on A was still at the bank (%v); want it to wait for the release", waited, multiNodeSlowBank)
		}
		if n := m.executed()["MW0001"]; n != 1 {
			t.Errorf("executed %d times", n)
		}
	})

	t.Run("CodeAcceptedOnARefusedOnB", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		_, chA := m.hold(0, c, "MR0001")
		_, chB := m.hold(1, c, "MR0002")
		code := m.mustCode(c)
		if st, e := m.confirm(0, c, chA, code); st != http.StatusOK {
			t.Fatalf("confirm on A: %d %s", st, e)
		}
		if st, e := m.confirm(1, c, chB, code); st != http.StatusConflict || e != "otp_reused" {
			t.Errorf("the same code on B: %d %s, want 409 otp_reused", st, e)
		}
		if ex := m.executed(); ex["MR0001"] != 1 || ex["MR0002"] != 0 {
			t.Errorf("executed MR0001 %d, MR0002 %d times; want 1 and 0", ex["MR0001"], ex["MR0002"])
		}
	})

	t.Run("TwentyConfirmationsAcrossNodesReleaseOnce", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		st, ch := m.hold(0, c, "MT0001")
		if st != http.StatusUnauthorized {
			t.Fatalf("hold: %d", st)
		}
		code := m.mustCode(c)
		statuses := make([]int, 20)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range statuses {
			wg.Go(func() {
				<-start
				statuses[i], _ = m.confirm(i%2, c, ch, code)
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				ok++
			case http.StatusConflict, http.StatusGone:
			default:
				t.Errorf("a confirmation answered %d", s)
			}
		}
		if ok != 1 || m.executed()["MT0001"] != 1 {
			t.Errorf("%d confirmations answered 200, the bank executed %d; want 1 and 1 (statuses %v)", ok, m.executed()["MT0001"], statuses)
		}
	})

	t.Run("FiveWrongCodesAcrossNodesLockOnBoth", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		st, ch := m.hold(0, c, "ML0001")
		if st != http.StatusUnauthorized {
			t.Fatalf("hold: %d", st)
		}
		wrong := wrongCode(c.Secret, time.Now())
		var got []int
		for i := range 5 {
			s, _ := m.confirm(i%2, c, ch, wrong)
			got = append(got, s)
		}
		if want := []int{401, 401, 401, 401, 423}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("five wrong codes, alternating A and B: %v, want %v", got, want)
		}
		for node := range 2 {
			if s, _ := m.hold(node, c, fmt.Sprintf("ML000%d", node+2)); s != http.StatusLocked {
				t.Errorf("a hold on node %d after the lock: %d, want 423", node, s)
			}
		}
		if n := m.executed()["ML0001"]; n != 0 {
			t.Errorf("the wrongly confirmed transfer executed %d times", n)
		}
	})

	t.Run("LargeBodyHeldOnAReleasedByB", func(t *testing.T) {
		m.t = t
		m.largeBody(t)
	})

	t.Run("AdminOnEitherNode", func(t *testing.T) {
		m.t = t
		c := m.take(1)[0]
		st, ch := m.hold(0, c, "MA0001")
		if st != http.StatusUnauthorized {
			t.Fatalf("hold: %d", st)
		}
		wrong := wrongCode(c.Secret, time.Now())
		for i := range 5 {
			m.confirm(i%2, c, ch, wrong)
		}
		locked := regexp.MustCompile(`(?m)^\s*Locked\s+yes`)
		if out := m.admin(1, "token-status", "--service", c.Service, "--user", c.User); !locked.MatchString(out) {
			t.Fatalf("token-status on B of a customer locked on A and B:\n%s", out)
		}
		m.admin(1, "token-unlock", "--service", c.Service, "--user", c.User, "--by", "yamada")
		if out := m.admin(0, "token-status", "--service", c.Service, "--user", c.User); locked.MatchString(out) {
			t.Errorf("token-status on A after the unlock on B:\n%s", out)
		}
		if st, _ := m.hold(0, c, "MA0002"); st != http.StatusUnauthorized {
			t.Errorf("a hold on A after the unlock on B: %d, want 401", st)
		}
	})

	t.Run("EtcdMemberKilledDuringConfirmations", func(t *testing.T) {
		m.t = t
		m.killDuringLoad(t)
	})

	t.Run("QuorumLost", func(t *testing.T) {
		m.t = t
		m.quorumLost(t)
	})

	t.Run("StoreCopyFromBbolt", func(t *testing.T) {
		m.t = t
		m.storeCopy(t)
	})

	t.Run("SweeperNodeKilled", func(t *testing.T) {
		m.t = t
		m.sweeperTakeover(t)
	})
}

// killDuringLoad: customers hold on one node and confirm on the other
// while the etcd leader is killed with SIGKILL and started again, then
// another member; a few send only wrong codes. No transfer executes twice
// or without a right code, and confirmations succeed again after each kill.
func (m *multiNode) killDuringLoad(t *testing.T) {
	cs := m.take(500)
	liars := cs[:3]
	honest := cs[3:]
	var mu sync.Mutex
	rightCode := map[string]bool{}
	var phase atomic.Int32 // 0 before the first kill, 1 after it, 2 after the leader is back
	released := [3]int{}
	statuses := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refs atomic.Int64
	var custs atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ref := fmt.Sprintf("MK%05d", refs.Add(1))
				holdNode := (w + i) % 2
				if w == 0 && i%4 == 0 {
					c := liars[(i/4)%len(liars)]
					if s, ch := m.hold(holdNode, c, ref); s == http.StatusUnauthorized {
						m.confirm(1-holdNode, c, ch, wrongCode(c.Secret, time.Now()))
					}
					continue
				}
				// At most 20 cycles a second per worker, so the customers'
				// codes (two a minute each) last the whole load.
				pace := time.After(50 * time.Millisecond)
				c := honest[int(custs.Add(1))%len(honest)]
				code, _, ok := c.NextCode(time.Now())
				if !ok {
					<-pace
					continue
				}
				s, ch := m.hold(holdNode, c, ref)
				if s != http.StatusUnauthorized {
					mu.Lock()
					statuses[s]++
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				rightCode[ref] = true
				mu.Unlock()
				p := phase.Load()
				s, _ = m.confirm(1-holdNode, c, ch, code)
				mu.Lock()
				statuses[s]++
				if s == http.StatusOK {
					released[p]++
				}
				mu.Unlock()
				<-pace
			}
		})
	}
	time.Sleep(2 * time.Second)
	leader, err := m.etcd.Leader()
	if err != nil {
		t.Fatal(err)
	}
	m.etcd.Kill(leader)
	phase.Store(1)
	t.Logf("killed etcd member %d, the leader", leader)
	time.Sleep(3 * time.Second)
	if err := m.etcd.Restart(leader); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	time.Sleep(2 * time.Second)
	other := (leader + 1) % 3
	m.etcd.Kill(other)
	t.Logf("killed etcd member %d", other)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if err := m.etcd.Restart(other); err != nil {
		t.Fatal(err)
	}
	if err := m.etcd.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	liarRefs := map[string]bool{}
	for ref, n := range m.executed() {
		if !strings.HasPrefix(ref, "MK") {
			continue
		}
		switch {
		case n > 1:
			t.Errorf("%s executed %d times", ref, n)
		case !rightCode[ref]:
			liarRefs[ref] = true
		}
	}
	if len(liarRefs) > 0 {
		t.Errorf("executed without a right code: %v", liarRefs)
	}
	t.Logf("releases before the kill %d, while the leader was down %d, after it came back %d; statuses %v", released[0], released[1], released[2], statuses)
	if released[0] == 0 || released[2] == 0 {
		t.Errorf("releases before the kill %d and after the leader came back %d; want some in both", released[0], released[2])
	}
}

// quorumLost: with two of three members stopped, protected operations and
// the gateway's pages answer 503 on both nodes, ordinary pages pass; once
// they are back, the nodes work again by themselves.
func (m *multiNode) quorumLost(t *testing.T) {
	cs := m.take(2)
	down := []int{1, 2}
	for _, i := range down {
		m.etcd.Kill(i)
	}
	stopped := time.Now()
	for node := range 2 {
		if s, _ := m.hold(node, cs[node], fmt.Sprintf("MQ%04d", node)); s != http.StatusServiceUnavailable {
			t.Errorf("node %d: a protected operation without quorum: %d, want 503", node, s)
		}
		if s := m.get(node, cs[node], "/.otpgate/token"); s != http.StatusServiceUnavailable {
			t.Errorf("node %d: the token page without quorum: %d, want 503", node, s)
		}
		if s := m.get(node, cs[node], "/menu"); s != http.StatusOK {
			t.Errorf("node %d: an ordinary page without quorum: %d, want 200 from the bank", node, s)
		}
	}
	t.Logf("503s and pass-through answered within %v of losing the quorum", time.Since(stopped).Round(time.Millisecond))
	if n := m.executed()["MQ0000"] + m.executed()["MQ0001"]; n != 0 {
		t.Errorf("%d protected operations executed without quorum", n)
	}
	for _, i := range down {
		if err := m.etcd.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	for node := range 2 {
		var s int
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if s, _ = m.hold(node, cs[node], fmt.Sprintf("MQ%04d", 10+node)); s == http.StatusUnauthorized {
				break
			}
		}
		if s != http.StatusUnauthorized {
			t.Errorf("node %d: 30 s after the members came back a hold answers %d, want 401", node, s)
		}
	}
	t.Logf("both nodes hold again %v after the members came back", time.Since(back).Round(time.Millisecond))
}

// leader is the node whose log last says it leads the background work and
// has not said since that it lost the lead (etcd failures, or a lease that
// lapsed on a starved machine, can move the lead).
func (m *multiNode) leader(t *testing.T) int {
	t.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var leads []int
		for i := range 2 {
			log, _ := os.ReadFile(filepath.Join(m.dirs[i], "otpgate.log"))
			if won := strings.LastIndex(string(log), "this node leads"); won >= 0 && won > strings.LastIndex(string(log), "lost the lead") {
				leads = append(leads, i)
			}
		}
		if len(leads) == 1 {
			return leads[0]
		}
	}
	t.Fatal("no node says it leads the background work")
	return -1
}

// sweeperTakeover: the node that leads mails the renewal reminders that
// come due; killed with SIGKILL, the other node takes over within a
// bounded time and mails the next ones; no reminder is mailed twice.
func (m *multiNode) sweeperTakeover(t *testing.T) {
	leader := m.leader(t)
	first := m.seed(10000, 5, true, 10*24*time.Hour) // inside the 30-day renewal window
	got := m.waitMails(first, 20*time.Second)
	if got[0]+got[1] != len(first) {
		t.Fatalf("reminders of the first batch by node: %v; want %d in all, one each", got, len(first))
	}
	if got[leader] != len(first) {
		// On a starved machine the lease (2 s) can lapse and the lead
		// move; what matters is that each reminder went out once.
		t.Logf("the lead moved from node %d while the first batch was mailed: %v by node", leader, got)
	}
	leader = m.leader(t)
	m.nodes[leader].kill()
	killed := time.Now()
	second := m.seed(10100, 5, true, 10*24*time.Hour)
	got = m.waitMails(second, 30*time.Second)
	took := time.Since(killed)
	if got[1-leader] != len(second) {
		t.Fatalf("reminders of the second batch by node: %v; want all %d from node %d, which took over", got, len(second), 1-leader)
	}
	t.Logf("node %d mailed the reminders %v after node %d was killed (election TTL 2s, sweep every 1s)", 1-leader, took.Round(time.Millisecond), leader)
	if took > 15*time.Second {
		t.Errorf("the takeover took %v", took)
	}
	time.Sleep(2 * time.Second) // a second mail would come within a sweep or two
	for addr, n := range m.mailsTo() {
		if n != 1 {
			t.Errorf("%s got %d reminders", addr, n)
		}
	}
}

// mailsTo counts the mails in both nodes' mail folders by recipient.
func (m *multiNode) mailsTo() map[string]int {
	out := map[string]int{}
	for _, byNode := range m.mailsByNode() {
		for addr, n := range byNode {
			out[addr] += n
		}
	}
	return out
}

func (m *multiNode) mailsByNode() [2]map[string]int {
	var out [2]map[string]int
	for i, dir := range m.dirs {
		out[i] = map[string]int{}
		files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			msg, err := mail.ReadMessage(fh)
			if err == nil {
				if to, err := mail.ParseAddress(msg.Header.Get("To")); err == nil {
					out[i][to.Address]++
				}
			}
			fh.Close()
		}
	}
	return out
}

// waitMails waits until every one of cs has had a mail, and returns how
// many of them each node mailed.
func (m *multiNode) waitMails(cs []*fleet.Customer, timeout time.Duration) [2]int {
	var got [2]int
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		by := m.mailsByNode()
		got = [2]int{}
		for _, c := range cs {
			for i := range 2 {
				if by[i][reminderAddress(c)] > 0 {
					got[i]++
				}
			}
		}
		if got[0]+got[1] >= len(cs) {
			return got
		}
	}
	return got
}

// storeCopy: "otpgate store copy" moves a bbolt installation into etcd,
// offline: counts checked, every value byte for byte (secrets stay sealed:
// no plaintext secret reaches etcd), and a second copy into the same
// prefix is refused.
func (m *multiNode) storeCopy(t *testing.T) {
	bin, err := buildOtpgate()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "otpgate.db")
	cs, err := fleet.Seed(context.Background(), path, m.key, 30)
	if err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		cmd := exec.Command(bin, "store", "copy", "--from", "bbolt:"+path, "--to", "etcd:"+strings.Join(m.etcd.Endpoints(), ","), "--prefix", "/copied/")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	if err != nil {
		t.Fatalf("store copy: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`tokens\s+30 copied\s+30 compared`).MatchString(out) {
		t.Errorf("store copy printed\n%s\nwant 30 tokens copied and compared", out)
	}
	db, err := boltstore.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, reachErr, err := etcdstore.Open(etcdstore.Options{Endpoints: m.etcd.Endpoints(), Prefix: "/copied/"})
	if err != nil || reachErr != nil {
		t.Fatal(err, reachErr)
	}
	defer s.Close()
	ctx := context.Background()
	src, _, err := db.Scan(ctx, store.Tokens, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	dst, _, err := s.Scan(ctx, store.Tokens, "", 100)
	if err != nil || len(dst) != len(src) {
		t.Fatalf("%d tokens in etcd, %d in the file: %v", len(dst), len(src), err)
	}
	for i := range src {
		if src[i].Key != dst[i].Key || !bytes.Equal(src[i].Value, dst[i].Value) {
			t.Errorf("token %q differs after the copy", src[i].Key)
		}
	}
	raw, err := s.Client().Get(ctx, "/copied/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw.Kvs {
		for _, c := range cs {
			if bytes.Contains(kv.Value, c.Secret) {
				t.Fatalf("etcd holds %s's secret in the clear under %s", c.User, kv.Key)
			}
		}
	}
	db.Close()
	if out, err := run(); err == nil || !strings.Contains(out, "not empty") {
		t.Errorf("a second copy into the same prefix: %v\n%s\nwant it refused", err, out)
	}
}

// admin runs an otpgate admin command against node's admin API and
// returns its output.
func (m *multiNode) admin(node int, args ...string) string {
	m.t.Helper()
	bin, err := buildOtpgate()
	if err != nil {
		m.t.Fatal(err)
	}
	args = append(args, "--address", "unix/"+filepath.Join(m.dirs[node], "admin.sock"))
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		m.t.Fatalf("otpgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// largeBody: a 3 MiB bulk-transfer file, over etcd's request limit, is
// held on A (sealed, in chunks) and released by B to the bank byte for
// byte.
func (m *multiNode) largeBody(t *testing.T) {
	c := m.take(1)[0]
	file := bytes.Repeat([]byte(strings.Repeat("2", 118)+"\r\n"), 3<<20/120)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("ref", "MB0001")
	fw, _ := mw.CreateFormFile("file", "sogo.txt")
	fw.Write(file)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, m.nodes[0].base+"/bulk/execute", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	res, err := m.cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var held struct{ Challenge, Error string }
	json.NewDecoder(res.Body).Decode(&held)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || held.Challenge == "" {
		t.Fatalf("a %d-byte bulk file on A: %d %s; want it held", len(file), res.StatusCode, held.Error)
	}
	// Held, the request is in etcd sealed: no line of the file, no
	// cookie of the customer in the clear.
	s := m.open()
	raw, err := s.Client().Get(context.Background(), m.prefix, clientv3.WithPrefix())
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, kv := range raw.Kvs {
		if bytes.Contains(kv.Value, file[:120]) || bytes.Contains(kv.Value, []byte(c.Cookie)) {
			t.Fatalf("etcd holds the held request in the clear under %s", kv.Key)
		}
		if strings.HasPrefix(string(kv.Key), m.prefix+"chunks/pending/"+held.Challenge+"/") {
			chunks++
		}
	}
	if chunks < 3 {
		t.Errorf("the held request is in %d chunks in etcd; want at least 3 of at most 1 MiB", chunks)
	}
	if st, e := m.confirm(1, c, held.Challenge, m.mustCode(c)); st != http.StatusOK {
		t.Fatalf("confirm on B: %d %s", st, e)
	}
	sum := sha256.Sum256(file)
	found := 0
	for _, e := range m.bank.Ledger() {
		if e.Params["ref"] == "MB0001" {
			found++
			if e.Params["file_sha256"] != hex.EncodeToString(sum[:]) || e.Params["file_size"] != strconv.Itoa(len(file)) {
				t.Errorf("the bank received a file of %s bytes, SHA-256 %s; want %d bytes, %x", e.Params["file_size"], e.Params["file_sha256"], len(file), sum)
			}
		}
	}
	if found != 1 {
		t.Errorf("the bulk transfer executed %d times", found)
	}
}
