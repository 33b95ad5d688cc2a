package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// Issue 6, class 5: the gateway in front of a real legacy server. The test
// starts Debian's Apache Tomcat 10.1 with a small JSP bank of the demo
// contract (testdata/tomcatbank), once with stock settings and once with the
// settings a legacy bank loosens, and puts the real Caddy chain with otpgate
// in front of it. A generated corpus of thousands of request targets and
// bodies is sent to Tomcat directly to learn which ones Tomcat executes, and
// each of those is sent again through the gateway with an attacker's session
// (someone who knows the password but has no code). Nothing Tomcat executes
// may execute through the gateway: refused (400, 403) and paused (303, 401)
// are the good outcomes. The verdict is Tomcat's own ledger, not a status.

// tomcatHome is where Debian's tomcat10 package installs Tomcat.
const tomcatHome = "/usr/share/tomcat10"

// tomcatPort is the first loopback port the Tomcat runs use (one each).
var tomcatPort = envPort("OTPGATE_TEST_TOMCAT_PORT", 18281)

// tomcatCorpus is how many probes each run generates: OTPGATE_TOMCAT_CORPUS
// raises it for a longer search; the default keeps the test near three
// minutes on two cores.
var tomcatCorpus = envPort("OTPGATE_TOMCAT_CORPUS", 6000)

// tomcatRequired skips the test without Tomcat on a developer's machine and
// fails it in CI (CI=true), which must never pass by skipping it.
func tomcatRequired(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("Tomcat integration test")
	}
	_, errTomcat := os.Stat(filepath.Join(tomcatHome, "bin", "catalina.sh"))
	_, errJava := exec.LookPath("java")
	if errTomcat == nil && errJava == nil {
		return
	}
	msg := "Tomcat 10.1 not found (" + tomcatHome + "/bin/catalina.sh and java); install it with: apt-get install -y tomcat10"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " — CI=true, so the Tomcat test must run")
	}
	t.Skip(msg)
}

// tomcat is one running Tomcat with the JSP bank as its ROOT webapp.
type tomcat struct {
	addr string // 127.0.0.1:port
	base string // CATALINA_BASE
}

// startTomcat runs Tomcat from the Debian install with a CATALINA_BASE of its
// own, until the test ends. loose selects the legacy bank's settings.
func startTomcat(t *testing.T, port int, loose bool) *tomcat {
	t.Helper()
	tc := &tomcat{addr: fmt.Sprintf("127.0.0.1:%d", port), base: t.TempDir()}
	for _, d := range []string{"conf", "logs", "temp", "work", "webapps/ROOT"} {
		if err := os.MkdirAll(filepath.Join(tc.base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Debian's own defaults: the JSP and default servlets, class loaders, logging.
	for _, f := range []string{"web.xml", "catalina.properties", "logging.properties"} {
		b, err := os.ReadFile(filepath.Join(tomcatHome, "etc", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tc.base, "conf", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := struct {
		Port  int
		Loose bool
	}{port, loose}
	for _, f := range []string{"server.xml", "context.xml"} {
		tmpl, err := template.ParseFiles(filepath.Join("testdata", "tomcatbank", f+".tmpl"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(tc.base, "conf", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := tmpl.Execute(out, data); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	if err := os.CopyFS(filepath.Join(tc.base, "webapps", "ROOT"), os.DirFS(filepath.Join("testdata", "tomcatbank", "ROOT"))); err != nil {
		t.Fatal(err)
	}

	console, err := os.Create(filepath.Join(tc.base, "logs", "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(tomcatHome, "bin", "catalina.sh"), "run")
	cmd.Dir = tc.base
	cmd.Env = append(os.Environ(),
		"CATALINA_HOME="+tomcatHome,
		"CATALINA_BASE="+tc.base,
		"CATALINA_TMPDIR="+filepath.Join(tc.base, "temp"),
		"CATALINA_PID=",
		"CATALINA_OPTS=",
		// Quick start-up and a small heap on a shared two-core machine.
		"JAVA_OPTS=-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.security.egd=file:/dev/urandom",
	)
	cmd.Stdout, cmd.Stderr = console, console
	// Its own process group: catalina.sh execs java, and the cleanup ends
	// exactly that group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Tomcat: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		console.Close()
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := client.Get("http://" + tc.addr + "/login")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return tc
			}
		}
		select {
		case <-exited:
			t.Fatalf("Tomcat exited while starting:\n%s", tc.log())
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tomcat did not answer GET /login within 90s (last error %v):\n%s", err, tc.log())
		}
	}
}

// log is the end of Tomcat's console output, for failure messages.
func (tc *tomcat) log() string {
	b, _ := os.ReadFile(filepath.Join(tc.base, "logs", "console.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// login logs in at Tomcat directly and returns the session ID.
func (tc *tomcat) login(t *testing.T, service, user string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.PostForm("http://"+tc.addr+"/login", url.Values{"service_id": {service}, "user_id": {user}, "password": {"demo"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == "JSESSIONID" && res.StatusCode == http.StatusFound {
			return c.Value
		}
	}
	t.Fatalf("login at Tomcat: status %d, cookies %v", res.StatusCode, res.Cookies())
	return ""
}

// tcEntry is one line of the JSP bank's ledger.
type tcEntry struct {
	Op      string            `json:"op"`
	Service string            `json:"service"`
	User    string            `json:"user"`
	Method  string            `json:"method"`
	Path    string            `json:"path"` // servlet path + path info: what Tomcat mapped
	URI     string            `json:"uri"`  // getRequestURI: the raw path
	Probe   string            `json:"probe"`
	Params  map[string]string `json:"params"`
}

// ledger reads what Tomcat executed, straight from Tomcat.
func (tc *tomcat) ledger(t *testing.T) []tcEntry {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + tc.addr + "/ledger.jsp")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []tcEntry
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("ledger: %v", err)
	}
	return out
}

// tomcatRules adds to the harness's rules the bank's token pages.
const tomcatRules = `rule token_management {
			path /otp/** /token/**
		}`

// newTomcatEnv loads the harness's gateway configuration with Tomcat as the
// bank. The env has no demo bank: its ledger is Tomcat's.
func newTomcatEnv(t *testing.T, tc *tomcat) *env {
	t.Helper()
	e := &env{t: t, bankURL: "http://" + tc.addr, dir: t.TempDir(), clock: &fakeClock{t: time.Now()}}
	prev := now
	now = e.clock.Now
	t.Cleanup(func() { now = prev })
	e.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	e.tester.InitServer(e.caddyfile(envOptions{Extra: tomcatRules}), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return e
}

// tomcatLogin logs c in through the gateway (Tomcat answers 302) and returns
// the bank session the gateway bound to c.
func tomcatLogin(c *customer) string {
	c.e.t.Helper()
	res, body := c.postForm("/login", url.Values{"service_id": {c.Service}, "user_id": {c.ID}, "password": {"demo"}})
	if res.StatusCode != http.StatusFound {
		c.e.t.Fatalf("login %s/%s through the gateway: status %d\n%s", c.Service, c.ID, res.StatusCode, body)
	}
	return gwSession(c)
}

// tcProbe is one generated request. "{sid}" in target and headers becomes
// the sender's session ID, "{host}" the address it is sent to.
type tcProbe struct {
	id      int
	class   string // path mutation + "/" + carrier: how the request was made
	op      string // the ledger op it aims at
	method  string
	target  string
	headers []string
	ctype   string // "" sends no Content-Type
	body    string
	chunked bool
}

// raw is the request as bytes on the wire, tagged with an X-Probe header
// that the JSP bank writes into the ledger.
func (p tcProbe) raw(host, sid, tag string) string {
	sub := strings.NewReplacer("{sid}", sid, "{host}", host)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nCookie: JSESSIONID=%s\r\nX-Probe: %s\r\n", p.method, sub.Replace(p.target), host, sid, tag)
	for _, h := range p.headers {
		b.WriteString(sub.Replace(h) + "\r\n")
	}
	if p.ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", p.ctype)
	}
	switch {
	case p.chunked:
		fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(p.body), p.body)
	case p.body != "" || p.method == "POST" || p.method == "PUT" || p.method == "PATCH":
		fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(p.body), p.body)
	default:
		b.WriteString("Connection: close\r\n\r\n")
	}
	return b.String()
}

// tcSend writes raw to addr on a new connection and returns the answer's
// status, 0 when there was none (the server closed the connection).
func tcSend(addr, method, raw string) int {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return -1
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return 0
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	return res.StatusCode
}

// tcSendAll sends every probe to addr, a few at a time, and returns the
// statuses by probe ID.
func tcSendAll(probes []tcProbe, addr, host, sid, prefix string) map[int]int {
	const workers = 4
	var mu sync.Mutex
	status := make(map[int]int, len(probes))
	work := make(chan tcProbe)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				st := tcSend(addr, p.method, p.raw(host, sid, prefix+strconv.Itoa(p.id)))
				mu.Lock()
				status[p.id] = st
				mu.Unlock()
			}
		}()
	}
	for _, p := range probes {
		work <- p
	}
	close(work)
	wg.Wait()
	return status
}

// executed maps the probes whose tag starts with prefix to their ledger entry.
func executed(ledger []tcEntry, prefix string) map[int]tcEntry {
	out := map[int]tcEntry{}
	for _, e := range ledger {
		if n, ok := strings.CutPrefix(e.Probe, prefix); ok {
			if id, err := strconv.Atoi(n); err == nil {
				out[id] = e
			}
		}
	}
	return out
}

func TestTomcatCorpusNeverExecutesWithoutCode(t *testing.T) {
	tomcatRequired(t)
	for i, run := range []struct {
		name  string
		loose bool
	}{{"stock", false}, {"loose", true}} {
		t.Run(run.name, func(t *testing.T) {
			tomcatCorpusRun(t, tomcatPort+i, run.loose)
		})
	}
}

func tomcatCorpusRun(t *testing.T, port int, loose bool) {
	start := time.Now()
	tc := startTomcat(t, port, loose)
	started := time.Since(start)
	e := newTomcatEnv(t, tc)
	// The attacker knows U001's password and has no code; require_otp all
	// means every protected operation needs one.
	attacker := e.customer("S001", "U001")
	gwSID := tomcatLogin(attacker)
	// A session of its own at Tomcat, so that nothing the direct run does
	// touches the gateway's binding.
	directSID := tc.login(t, "S002", "U101")

	probes := tomcatProbes(tomcatCorpus, 1)
	gwHost := strings.TrimPrefix(gatewayURL, "http://")

	// 1. What does Tomcat execute?
	direct := tcSendAll(probes, tc.addr, tc.addr, directSID, "d")
	ranDirect := executed(tc.ledger(t), "d")
	for _, ctl := range tomcatControls(loose) {
		p := probes[ctl.id]
		if _, ran := ranDirect[ctl.id]; ran != ctl.executes {
			t.Fatalf("control %s %s %s: Tomcat executed=%v (status %d), want %v: the JSP bank or the %s settings do not work as the test assumes\n%s",
				p.class, p.method, p.target, ran, direct[ctl.id], ctl.executes, map[bool]string{false: "stock", true: "loose"}[loose], tc.log())
		}
	}
	var toGateway []tcProbe
	for _, p := range probes {
		if _, ok := ranDirect[p.id]; ok {
			toGateway = append(toGateway, p)
		}
	}

	// 2. The same requests through the gateway, as the attacker.
	before := len(tc.ledger(t))
	via := tcSendAll(toGateway, gwAddr(gatewayURL), gwHost, gwSID, "g")
	ledger := tc.ledger(t)
	ranVia := executed(ledger, "g")
	for _, en := range ledger[before:] {
		if !strings.HasPrefix(en.Probe, "g") {
			t.Errorf("ledger entry without a gateway probe tag during the gateway run: %+v", en)
		}
	}

	// The binding held: a plain transfer is still paused, so every refusal
	// above was the gateway reading the request, not a lost session.
	res, body := attacker.postForm("/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"1"}})
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/.otpgate/") {
		t.Fatalf("after the corpus a plain transfer got %d (Location %q), want 303 to the gateway: the attacker's binding was lost\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}

	// Outcomes through the gateway, in total and by path mutation class.
	counts := map[string]int{}
	byMutation := map[string]map[string]int{}
	for _, p := range toGateway {
		var outcome string
		switch st := via[p.id]; {
		case ranVia[p.id].Probe != "":
			outcome = "executed"
		case st == http.StatusBadRequest:
			outcome = "refused 400"
		case st == http.StatusForbidden:
			outcome = "refused 403"
		case st == http.StatusSeeOther || st == http.StatusUnauthorized:
			outcome = "paused"
		default:
			outcome = fmt.Sprintf("other %d", st)
		}
		counts[outcome]++
		mut, _, _ := strings.Cut(p.class, "/")
		if byMutation[mut] == nil {
			byMutation[mut] = map[string]int{}
		}
		byMutation[mut][outcome]++
	}
	t.Logf("%d probes generated; Tomcat executed %d directly; through the gateway: %v; Tomcat started in %v, whole run %v",
		len(probes), len(toGateway), counts, started.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, mut := range slices.Sorted(maps.Keys(byMutation)) {
		t.Logf("  %-28s %v", mut, byMutation[mut])
	}

	// Every request Tomcat executes must have been held for a code. One
	// error per path mutation class, with a few examples.
	examples := map[string][]string{}
	for _, p := range toGateway {
		en, ran := ranVia[p.id]
		if !ran {
			continue
		}
		mut, carrier, _ := strings.Cut(p.class, "/")
		switch n := len(examples[mut]); {
		case n < 4:
			examples[mut] = append(examples[mut], fmt.Sprintf("%s %q [%s] -> gateway %d, Tomcat executed %s as %s/%s at %q",
				p.method, p.target, carrier, via[p.id], en.Op, en.Service, en.User, en.Path))
		case n == 4:
			examples[mut] = append(examples[mut], "...")
		}
	}
	for _, mut := range slices.Sorted(maps.Keys(examples)) {
		t.Errorf("%s: %d requests executed at Tomcat through the gateway without a code, e.g.:\n  %s",
			mut, byMutation[mut]["executed"], strings.Join(examples[mut], "\n  "))
	}
}

// tcEndpoint is one protected endpoint of the JSP bank.
type tcEndpoint struct {
	op     string
	path   string
	fields [][2]string // required fields with values; nil for file and token endpoints
	file   bool        // needs an uploaded file "file"
}

var tcEndpoints = []tcEndpoint{
	{op: "transfer", path: "/transfer/execute", fields: [][2]string{{"to_bank", "0001"}, {"to_account", "1234567"}, {"amount", "50000"}}},
	{op: "bill_payment", path: "/payment/execute", fields: [][2]string{{"payee", "東京電力"}, {"amount", "8000"}}},
	{op: "bulk_transfer", path: "/bulk/execute", file: true},
	{op: "bulk_transfer", path: "/payroll/execute", file: true},
	{op: "user_change", path: "/profile/update", fields: [][2]string{{"email", "attacker@evil.example"}, {"phone", "090-0000-0000"}}},
	{op: "token_management", path: "/token/revoke"},
	{op: "token_management", path: "/otp/reset"},
}

// tcMutation is one way of writing a path.
type tcMutation struct{ class, target string }

// tcDotDots are spellings of a ".." segment; tcNames are segments that some
// reader may read as nothing, a dot segment or a separator, and another as
// a name.
var (
	tcDotDots = []string{"..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%25252e%25252e", "%c0%ae%c0%ae", "%e0%80%ae%e0%80%ae",
		"%u002e%u002e", "..;", "..;x=1", "%2e%2e;", "..%3b", "..%3B", "%2e%2e%3b", "..%00", "..%20", "..%09", "..%0a", "%20..", "..%c0%af", ".%00.", "%ef%bc%8e%ef%bc%8e"}
	tcNames = []string{"x", ".", "...", "....", ".;", "...;", "%2e%2e%2e", " ", "%20", "%20%20", "%09", "%0a", "%0d", "%0b", "%0c", "%00", "%01", "%1f", "%7f",
		"%c2%a0", "%c2%85", "%e3%80%80", "%e2%80%8b", "%ef%bb%bf", "%3b", "%3B", ";", ";x", "%3bx", "%3b%2e%2e", "%3b..", ". ", " .", "%2e%20", "%20%2e", "%2e%09",
		"%c0%ae", "%u002e", "%ef%bc%8e", "+", "%2b", "%25", "%2525", "%5c", "%2f", "%252f", "~", "*", "%3f", "%23", "?x", "x;jsessionid={sid}"}
	tcSlashes = []string{"%2F", "%2f", "%252F", "%25252F", "%5C", "%5c", "%255C", `\`, `\\`, "//", "///", "/./", "/%2e/", "/.%2f", "%c0%af", "%e0%80%af", "%c1%9c",
		"%u002f", "%u2215", "%ef%bc%8f", "%e2%88%95", ";/", "/;/", "/;x/", "%3b/", "/%3b/", "/%00/", "/%20/", "/%09/", "%00/", "/\x7f/"}
	tcTrailers = []string{"/", "//", ".", "..", "./", "/.", "/..", "/x/..", "/%2e", "/%2e%2e", "%2e", "%20", "%09", "%00", "%00.jsp", "%0a", "%0d%0a", "%23", "%3f", "%3fx=1",
		"?", "#", "#x", ";", ";x=1", ";jsessionid={sid}", ";jsessionid={sid};x", "%3bjsessionid={sid}", "~", "*", "%2F", "%5C", `\`, ".jsp", "%c0%ae", "%ef%bc%8e",
		"%e3%80%80", "%c2%a0", "+", "%2b", "...", ". .", "/%20", "/%09", "/%00", "/;", "/;x"}
)

// pctEncode writes s with every byte percent-encoded, depth times over.
func pctEncode(s string, depth int) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteString(pctByte(s[i], depth))
	}
	return b.String()
}

func pctByte(c byte, depth int) string {
	e := fmt.Sprintf("%%%02X", c)
	for range depth - 1 {
		e = "%25" + e[1:]
	}
	return e
}

// tcPathMutations writes path p in every way the generator knows.
func tcPathMutations(p string) []tcMutation {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	join := func(parts []string) string { return "/" + strings.Join(parts, "/") }
	var out []tcMutation
	add := func(class, target string) { out = append(out, tcMutation{class, target}) }

	// One character percent-encoded, once to three times over, in both hex cases.
	for i := 0; i < len(p); i++ {
		for depth := 1; depth <= 3; depth++ {
			add(fmt.Sprintf("encode-char-depth%d", depth), p[:i]+pctByte(p[i], depth)+p[i+1:])
		}
		if lower := strings.ToLower(pctByte(p[i], 1)); lower != pctByte(p[i], 1) {
			add("encode-char-lowerhex", p[:i]+lower+p[i+1:])
		}
	}
	// Whole segments and the whole path encoded.
	for i := range segs {
		for depth := 1; depth <= 3; depth++ {
			s := slices.Clone(segs)
			s[i] = pctEncode(s[i], depth)
			add(fmt.Sprintf("encode-segment-depth%d", depth), join(s))
		}
	}
	for depth := 1; depth <= 3; depth++ {
		add(fmt.Sprintf("encode-all-depth%d", depth), pctEncode(p, depth))
		add(fmt.Sprintf("encode-all-but-slash-depth%d", depth), "/"+strings.Join(func() []string {
			s := slices.Clone(segs)
			for i := range s {
				s[i] = pctEncode(s[i], depth)
			}
			return s
		}(), "/"))
	}
	// Separators: each "/" (the leading one too) written another way.
	for i := 0; i < len(segs); i++ {
		for _, sl := range tcSlashes {
			prefix := "/" + strings.Join(segs[:i], "/")
			if i == 0 {
				prefix = ""
			}
			add("separator", prefix+sl+strings.Join(segs[i:], "/"))
		}
	}
	// Dot segments: a name and a ".." that removes it, at every depth; a
	// reader that makes the name vanish lets the ".." remove a real segment.
	for i := 0; i <= len(segs); i++ {
		at := func(ins string) string {
			s := slices.Concat(segs[:i], []string{ins}, segs[i:])
			return join(s)
		}
		for _, name := range tcNames {
			add("name-then-dotdot", at(name+"/.."))
			add("name-dotdot-in-one", at(name+"%2f.."))
		}
		for _, dd := range tcDotDots {
			add("dotdot-spelling", at("x/"+dd))
			add("dotdot-pops-real", at("x/y/"+dd+"/"+dd+"/x/"+dd))
		}
		add("dot-segment", at("."))
		add("dot-segment", at("%2e"))
		add("dot-segment", at("%252e"))
		add("dot-segment", at("%c0%ae"))
		add("dot-segment", at("..;"))
		for _, seg := range []string{"", ";", ";x=1", ";jsessionid={sid}", "%3b"} {
			add("empty-segment", at(seg))
		}
	}
	// A real segment removed after a name only some readers keep.
	for _, name := range tcNames {
		add("pop-real-segment", join(slices.Concat(segs[:1], []string{name, "..", "..", segs[0]}, segs[1:])))
	}
	add("leading-dotdot", "/.."+p)
	add("leading-dotdot", "/x/.."+p)
	add("leading-dotdot", "/%2e%2e"+p)
	add("leading-dotdot", "/..;"+p)
	add("leading-dotdot", "/x/..;"+p)
	add("leading-dotdot", "/;x=1/.."+p)
	// Path parameters on each segment.
	for i := range segs {
		for _, param := range []string{";", ";x=1", ";jsessionid={sid}", ";a;b=c", ";%2f", ";/..", ";x=%2e%2e", "%3bx=1", ";x=1?", ";jsessionid={sid}%2f"} {
			s := slices.Clone(segs)
			s[i] += param
			add("path-param", join(s))
		}
	}
	// Letter case.
	add("case", strings.ToUpper(p))
	for i := range segs {
		s := slices.Clone(segs)
		s[i] = strings.ToUpper(s[i][:1]) + s[i][1:]
		add("case", join(s))
	}
	// Trailing bytes.
	for _, tr := range tcTrailers {
		add("trailing", p+tr)
	}
	// NUL and truncation inside a segment.
	for i := range segs {
		s := slices.Clone(segs)
		s[i] += "%00x"
		add("nul", join(s))
		s[i] = segs[i] + "%00/../" + segs[i]
		add("nul", join(s))
	}
	// Overlong UTF-8 and %u for the first letter of each segment; full-width letters.
	for i := range segs {
		c := segs[i][0]
		for _, enc := range []string{
			fmt.Sprintf("%%%02x%%%02x", 0xc0|c>>6, 0x80|c&0x3f),
			fmt.Sprintf("%%e0%%%02x%%%02x", 0x80|c>>6, 0x80|c&0x3f),
			fmt.Sprintf("%%u00%02x", c),
			url.PathEscape(string(rune(0xff00 + int(c) - 0x20))),
		} {
			s := slices.Clone(segs)
			s[i] = enc + s[i][1:]
			add("unicode-letter", join(s))
		}
	}
	// Absolute-form targets.
	for _, pre := range []string{"http://{host}", "HTTP://{host}", "http://evil.example", "http://{host}/", "http://{host}/.", "http://{host}:80"} {
		add("absolute-form", pre+p)
	}
	// Raw bytes some servers take in a request line.
	for _, r := range []string{`\`, "\t", "\x7f", "\xe3\x80\x80", "|", "\"", "{", "^"} {
		add("raw-byte", p+r)
		add("raw-byte", "/"+segs[0]+r+"/../"+strings.Join(segs, "/"))
	}
	return out
}

// tcCarrier is a method and a way of sending the operation's fields.
type tcCarrier struct {
	class    string
	method   string
	query    bool   // the fields go into the query
	querySep string // between query fields; default "&"
	headers  []string
	ctype    string
	body     string
	chunked  bool
}

const tcBoundary = "otpgateTomcatBoundary"

// tcCarriers lists every way the generator sends ep's fields.
func tcCarriers(ep tcEndpoint) []tcCarrier {
	const form = "application/x-www-form-urlencoded"
	mp := "multipart/form-data; boundary=" + tcBoundary
	enc := url.Values{}
	for _, f := range ep.fields {
		enc.Set(f[0], f[1])
	}
	fields := enc.Encode()
	part := func(disposition, content string) string {
		return "--" + tcBoundary + "\r\nContent-Disposition: form-data; " + disposition + "\r\n\r\n" + content + "\r\n"
	}
	parts := func(name func(string) string) string {
		var b strings.Builder
		for _, f := range ep.fields {
			b.WriteString(part(name(f[0]), f[1]))
		}
		return b.String()
	}
	const csv = "1,0001,001,1234567,ﾔﾏﾀﾞ ﾀﾛｳ,250000\r\n"
	end := "--" + tcBoundary + "--\r\n"
	var js strings.Builder
	js.WriteString("{")
	for i, f := range ep.fields {
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, "%q:%q", f[0], f[1])
	}
	js.WriteString("}")

	if ep.file {
		file := part(`name="file"; filename="sogo.csv"`, csv)
		return []tcCarrier{
			{class: "multipart-file", method: "POST", ctype: mp, body: file + end},
			{class: "multipart-file-put", method: "PUT", ctype: mp, body: file + end},
			{class: "multipart-file-override", method: "POST", ctype: mp, body: file + end, headers: []string{"X-HTTP-Method-Override: PUT"}},
			{class: "multipart-file-method-param", method: "POST", ctype: mp, body: part(`name="_method"`, "PATCH") + file + end},
			{class: "multipart-file-get", method: "GET", ctype: mp, body: file + end},
			{class: "multipart-file-rfc2231-filename", method: "POST", ctype: mp, body: part(`name="file"; filename*=UTF-8''sogo.csv`, csv) + end},
			{class: "multipart-file-rfc2231-name", method: "POST", ctype: mp, body: part(`name*=UTF-8''file; filename="sogo.csv"`, csv) + end},
			{class: "multipart-file-dup", method: "POST", ctype: mp, body: part(`name="file"; filename="a.csv"`, "x\r\n") + file + end},
			{class: "multipart-file-name-star-and-plain", method: "POST", ctype: mp, body: part(`name*=UTF-8''file; filename="a.csv"`, "x\r\n") + file + end},
			{class: "multipart-file-chunked", method: "POST", ctype: mp, body: file + end, chunked: true},
			{class: "multipart-file-ctype-case", method: "POST", ctype: "Multipart/Form-Data; boundary=" + tcBoundary, body: file + end},
			{class: "multipart-file-quoted-boundary", method: "POST", ctype: `multipart/form-data; boundary="` + tcBoundary + `"`, body: file + end},
			{class: "multipart-file-mixed", method: "POST", ctype: "multipart/mixed; boundary=" + tcBoundary, body: file + end},
		}
	}
	if len(ep.fields) == 0 {
		return []tcCarrier{
			{class: "get", method: "GET"},
			{class: "post", method: "POST", ctype: form},
			{class: "head", method: "HEAD"},
			{class: "put", method: "PUT"},
			{class: "delete", method: "DELETE"},
			{class: "options-override", method: "OPTIONS", headers: []string{"X-HTTP-Method-Override: POST"}},
			{class: "propfind-override", method: "PROPFIND", headers: []string{"X-Method-Override: GET"}},
			{class: "method-lowercase", method: "get"},
			{class: "method-param", method: "POST", ctype: form, body: "_method=DELETE"},
		}
	}
	return []tcCarrier{
		{class: "form", method: "POST", ctype: form, body: fields},
		{class: "query-get", method: "GET", query: true},
		{class: "query-post", method: "POST", query: true, ctype: form},
		{class: "query-head", method: "HEAD", query: true},
		{class: "query-delete", method: "DELETE", query: true},
		{class: "query-semicolons", method: "GET", query: true, querySep: ";"},
		{class: "form-put", method: "PUT", ctype: form, body: fields},
		{class: "form-patch", method: "PATCH", ctype: form, body: fields},
		{class: "form-delete", method: "DELETE", ctype: form, body: fields},
		{class: "form-get-body", method: "GET", ctype: form, body: fields},
		{class: "form-override-header", method: "POST", ctype: form, body: fields, headers: []string{"X-HTTP-Method-Override: PUT"}},
		{class: "form-override-x-http-method", method: "POST", ctype: form, body: fields, headers: []string{"X-HTTP-Method: DELETE"}},
		{class: "form-method-param", method: "POST", ctype: form, body: fields + "&_method=PATCH"},
		{class: "query-options-override", method: "OPTIONS", query: true, headers: []string{"X-HTTP-Method-Override: GET"}},
		{class: "query-unknown-method-override", method: "FOO", query: true, headers: []string{"X-Method-Override: POST"}},
		{class: "form-chunked", method: "POST", ctype: form, body: fields, chunked: true},
		{class: "query-method-lowercase", method: "get", query: true},
		{class: "form-method-lowercase", method: "post", query: true, ctype: form, body: fields},
		{class: "form-ctype-case", method: "POST", ctype: "Application/X-WWW-Form-URLEncoded", body: fields},
		{class: "form-ctype-charset", method: "POST", ctype: form + "; charset=Shift_JIS", body: fields},
		{class: "form-ctype-junk-params", method: "POST", ctype: form + ";;x", body: fields},
		{class: "form-ctype-space", method: "POST", ctype: form + " ", body: fields},
		{class: "form-no-ctype", method: "POST", body: fields},
		{class: "text-plain", method: "POST", ctype: "text/plain", body: fields},
		{class: "json", method: "POST", ctype: "application/json", body: js.String()},
		{class: "form-encoded-names", method: "POST", ctype: form, body: strings.ReplaceAll(strings.ReplaceAll(fields, "to_", "%74o_"), "amount", "%61mount")},
		{class: "form-dup", method: "POST", ctype: form, body: fields + "&" + fields},
		{class: "multipart", method: "POST", ctype: mp, body: parts(func(n string) string { return `name="` + n + `"` }) + end},
		{class: "multipart-put", method: "PUT", ctype: mp, body: parts(func(n string) string { return `name="` + n + `"` }) + end},
		{class: "multipart-rfc2231", method: "POST", ctype: mp, body: parts(func(n string) string { return `name*=UTF-8''` + n }) + end},
		{class: "multipart-dup", method: "POST", ctype: mp, body: parts(func(n string) string { return `name="` + n + `"` }) + parts(func(n string) string { return `name="` + n + `"` }) + end},
		{class: "multipart-unquoted", method: "POST", ctype: mp, body: parts(func(n string) string { return `name=` + n }) + end},
		{class: "multipart-ctype-case", method: "POST", ctype: "MULTIPART/FORM-DATA; boundary=" + tcBoundary, body: parts(func(n string) string { return `name="` + n + `"` }) + end},
	}
}

// apply builds the probe that sends c to target.
func (c tcCarrier) apply(ep tcEndpoint, m tcMutation) tcProbe {
	target := m.target
	if c.query && len(ep.fields) > 0 {
		var q []string
		for _, f := range ep.fields {
			q = append(q, url.QueryEscape(f[0])+"="+url.QueryEscape(f[1]))
		}
		sep := c.querySep
		if sep == "" {
			sep = "&"
		}
		if strings.Contains(target, "?") {
			target += "&" + strings.Join(q, sep)
		} else {
			target += "?" + strings.Join(q, sep)
		}
	}
	return tcProbe{class: m.class + "/" + c.class, op: ep.op, method: c.method, target: target, headers: c.headers, ctype: c.ctype, body: c.body, chunked: c.chunked}
}

// tomcatProbes generates n probes, deterministically from seed: every
// endpoint with every carrier on its plain path; then path mutations with the
// endpoint's plain carrier, in a shuffled order and taking turns between the
// endpoints, until 90% of n (all of them once n is large enough); then random
// mutation and carrier pairs until n. The first probes are the controls
// (tomcatControls).
func tomcatProbes(n int, seed uint64) []tcProbe {
	var out []tcProbe
	seen := map[string]bool{}
	add := func(p tcProbe) {
		key := p.method + " " + p.target + " " + p.ctype + " " + strings.Join(p.headers, "|") + " " + p.body
		if seen[key] || len(out) >= n {
			return
		}
		seen[key] = true
		p.id = len(out)
		out = append(out, p)
	}
	type pool struct {
		ep       tcEndpoint
		muts     []tcMutation
		carriers []tcCarrier
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x6f7470676174))
	var pools []pool
	for _, ep := range tcEndpoints {
		muts := tcPathMutations(ep.path)
		rng.Shuffle(len(muts), func(i, j int) { muts[i], muts[j] = muts[j], muts[i] })
		pools = append(pools, pool{ep, muts, tcCarriers(ep)})
	}
	for _, pl := range pools {
		for _, c := range pl.carriers {
			add(c.apply(pl.ep, tcMutation{"plain", pl.ep.path}))
		}
	}
	structured := n * 9 / 10
	for i := 0; len(out) < structured; i++ {
		more := false
		for _, pl := range pools {
			if i < len(pl.muts) && len(out) < structured {
				more = true
				add(pl.carriers[0].apply(pl.ep, pl.muts[i]))
			}
		}
		if !more {
			break
		}
	}
	for tries := 0; len(out) < n && tries < 20*n; tries++ {
		pl := pools[rng.IntN(len(pools))]
		add(pl.carriers[rng.IntN(len(pl.carriers))].apply(pl.ep, pl.muts[rng.IntN(len(pl.muts))]))
	}
	return out
}

// tcControl is a probe whose fate at Tomcat the test knows in advance: proof
// that the JSP bank works and that the run's settings took effect.
type tcControl struct {
	id       int
	executes bool
}

// tomcatControls are the first probes of tomcatProbes: transfer by form
// (always executes), by PUT (only when the connector parses PUT bodies) and
// by multipart (only with casual multipart parsing).
func tomcatControls(loose bool) []tcControl {
	carriers := tcCarriers(tcEndpoints[0])
	idx := func(class string) int {
		return slices.IndexFunc(carriers, func(c tcCarrier) bool { return c.class == class })
	}
	return []tcControl{
		{idx("form"), true},
		{idx("query-get"), true},
		{idx("form-put"), loose},
		{idx("multipart"), loose},
		{idx("text-plain"), false},
	}
}
