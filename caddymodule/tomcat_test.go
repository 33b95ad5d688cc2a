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
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/otpgate/otpgate/internal/app"
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

// tomcatPort is the first of the six loopback ports the Tomcat runs use,
// one per run.
var tomcatPort = envPort("OTPGATE_TEST_TOMCAT_PORT", 18281)

// tomcatCorpus is how many probes each run generates: OTPGATE_TOMCAT_CORPUS
// raises it for a longer search. With the default, the three Tomcat tests
// take about 40 s on two cores (Tomcat starts in about 2 s).
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
	prev := app.Now
	app.Now = e.clock.Now
	t.Cleanup(func() { app.Now = prev })
	e.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(e.tester, e.caddyfile(envOptions{Extra: tomcatRules}))
	if t.Failed() {
		t.FailNow()
	}
	waitServing(t)
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

// tcExchange writes raw to addr on a new connection and reads the answer.
func tcExchange(addr, method, raw string) (*http.Response, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return nil, "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, string(b), err
}

// tcSend is tcExchange's status: 0 when there was no answer.
func tcSend(addr, method, raw string) int {
	res, _, err := tcExchange(addr, method, raw)
	if res == nil || err != nil {
		return 0
	}
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

// tomcatRuns runs f against a stock and a loosened Tomcat, on ports first
// and first+1.
func tomcatRuns(t *testing.T, first int, f func(t *testing.T, tc *tomcat, loose bool)) {
	tomcatRequired(t)
	for i, run := range []struct {
		name  string
		loose bool
	}{{"stock", false}, {"loose", true}} {
		t.Run(run.name, func(t *testing.T) {
			f(t, startTomcat(t, tomcatPort+first+i, run.loose), run.loose)
		})
	}
}

func TestTomcatCorpusNeverExecutesWithoutCode(t *testing.T) {
	tomcatRuns(t, 0, tomcatCorpusRun)
}

func tomcatCorpusRun(t *testing.T, tc *tomcat, loose bool) {
	start := time.Now()
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
	t.Logf("%d probes generated; Tomcat executed %d directly; through the gateway: %v; %v",
		len(probes), len(toGateway), counts, time.Since(start).Round(time.Millisecond))
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
	path   string
	fields [][2]string // required fields with values; nil for file and token endpoints
	file   bool        // needs an uploaded file "file"
}

var tcEndpoints = []tcEndpoint{
	{path: "/transfer/execute", fields: [][2]string{{"to_bank", "0001"}, {"to_account", "1234567"}, {"amount", "50000"}}},
	{path: "/payment/execute", fields: [][2]string{{"payee", "東京電力"}, {"amount", "8000"}}},
	{path: "/bulk/execute", file: true},
	{path: "/payroll/execute", file: true},
	{path: "/profile/update", fields: [][2]string{{"email", "attacker@evil.example"}, {"phone", "090-0000-0000"}}},
	{path: "/token/revoke"},
	{path: "/otp/reset"},
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
	return tcProbe{class: m.class + "/" + c.class, method: c.method, target: target, headers: c.headers, ctype: c.ctype, body: c.body, chunked: c.chunked}
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

// Login binding against Tomcat (issue 6, classes 2 and 5). The attacker has
// an account and a token of their own, and the victim's password. A login of
// the victim that Tomcat accepts but the gateway does not read as one, sent
// with the attacker's bound cookie, must not leave the new session bound to
// the attacker: otherwise the attacker's code releases an operation that
// Tomcat executes as the victim.

// tcVictim and tcAttacker are login fields of the two customers.
const (
	tcVictim   = "service_id=S001&user_id=U002&password=demo"
	tcAttacker = "service_id=S001&user_id=U001&password=demo"
)

// tomcatLoginVariants are logins of the victim in the ways a servlet's
// getParameter reads them on any method.
func tomcatLoginVariants() []tcProbe {
	const form = "application/x-www-form-urlencoded"
	mpType := "multipart/form-data; boundary=" + tcBoundary
	multipart := func(name func(string) string) string {
		var b strings.Builder
		for _, kv := range strings.Split(tcVictim, "&") {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n", tcBoundary, name(k), v)
		}
		return b.String() + "--" + tcBoundary + "--\r\n"
	}
	v := []tcProbe{
		{class: "get-query", method: "GET", target: "/login?" + tcVictim},
		{class: "head-query", method: "HEAD", target: "/login?" + tcVictim},
		{class: "options-query", method: "OPTIONS", target: "/login?" + tcVictim},
		{class: "lowercase-method-query", method: "get", target: "/login?" + tcVictim},
		{class: "post-query-empty-body", method: "POST", target: "/login?" + tcVictim, ctype: form},
		{class: "post-query-text-body", method: "POST", target: "/login?" + tcVictim, ctype: "text/plain", body: "x"},
		{class: "post-form", method: "POST", target: "/login", ctype: form, body: tcVictim},
		{class: "put-form", method: "PUT", target: "/login", ctype: form, body: tcVictim},
		{class: "patch-form", method: "PATCH", target: "/login", ctype: form, body: tcVictim},
		{class: "delete-form", method: "DELETE", target: "/login", ctype: form, body: tcVictim},
		{class: "form-ctype-case", method: "POST", target: "/login", ctype: "Application/X-WWW-Form-URLEncoded", body: tcVictim},
		{class: "form-ctype-charset", method: "POST", target: "/login", ctype: form + "; charset=UTF-8", body: tcVictim},
		{class: "form-no-ctype", method: "POST", target: "/login", body: tcVictim},
		{class: "form-text-plain", method: "POST", target: "/login", ctype: "text/plain", body: tcVictim},
		{class: "form-chunked", method: "POST", target: "/login", ctype: form, body: tcVictim, chunked: true},
		{class: "form-override-header", method: "POST", target: "/login", ctype: form, body: tcVictim, headers: []string{"X-HTTP-Method-Override: GET"}},
		{class: "form-method-param", method: "POST", target: "/login", ctype: form, body: tcVictim + "&_method=PUT"},
		{class: "form-encoded-names", method: "POST", target: "/login", ctype: form, body: "%73ervice_id=S001&%75ser_id=U002&password=demo"},
		{class: "json", method: "POST", target: "/login", ctype: "application/json", body: `{"service_id":"S001","user_id":"U002","password":"demo"}`},
		{class: "multipart", method: "POST", target: "/login", ctype: mpType, body: multipart(func(n string) string { return `name="` + n + `"` })},
		{class: "multipart-put", method: "PUT", target: "/login", ctype: mpType, body: multipart(func(n string) string { return `name="` + n + `"` })},
		{class: "multipart-rfc2231", method: "POST", target: "/login", ctype: mpType, body: multipart(func(n string) string { return `name*=UTF-8''` + n })},
		{class: "split-query-body", method: "POST", target: "/login?service_id=S001", ctype: form, body: "user_id=U002&password=demo"},
		{class: "query-victim-body-attacker", method: "POST", target: "/login?" + tcVictim, ctype: form, body: tcAttacker},
		{class: "body-victim-query-attacker", method: "POST", target: "/login?" + tcAttacker, ctype: form, body: tcVictim},
		{class: "body-victim-then-attacker", method: "POST", target: "/login", ctype: form, body: tcVictim + "&" + tcAttacker},
		{class: "body-attacker-user-last", method: "POST", target: "/login", ctype: form, body: tcVictim + "&user_id=U001"},
	}
	for _, path := range []string{"/login;x=1", "/login;jsessionid={sid}", "/./login", "/x/../login", "//login", "/%6cogin", "/login%3b", "/LOGIN", "/login/", "http://{host}/login", "/x/.../../../login"} {
		v = append(v,
			tcProbe{class: "path " + path + " form", method: "POST", target: path, ctype: form, body: tcVictim},
			tcProbe{class: "path " + path + " query", method: "GET", target: path + "?" + tcVictim})
	}
	for i := range v {
		v[i].id = i
	}
	return v
}

func TestTomcatLoginVariantsNeverRebindToVictim(t *testing.T) {
	tomcatRuns(t, 2, tomcatLoginRun)
}

func tomcatLoginRun(t *testing.T, tc *tomcat, loose bool) {
	e := newTomcatEnv(t, tc)
	attacker := e.customer("S001", "U001")
	tomcatLogin(attacker)
	attacker.json = true
	attacker.enrol()
	attacker.json = false
	gw := gwAddr(gatewayURL)
	gwURL, _ := url.Parse(gatewayURL)

	// Which variants log the victim in when sent straight to Tomcat?
	direct := map[string]bool{}
	for _, v := range tomcatLoginVariants() {
		res, _, err := tcExchange(tc.addr, v.method, v.raw(tc.addr, "none", "direct-login"))
		if err != nil {
			t.Fatalf("%s: %v", v.class, err)
		}
		if tc.whoIs(t, tcSessionSet(res, "")) == "S001/U002" {
			direct[v.class] = true
		}
	}
	for _, want := range []struct {
		class string
		logs  bool
	}{{"get-query", true}, {"post-form", true}, {"put-form", loose}, {"multipart", loose}, {"json", false}} {
		if direct[want.class] != want.logs {
			t.Fatalf("%s logs the victim in at Tomcat: %v, want %v: the JSP bank or the run's settings do not work as the test assumes", want.class, direct[want.class], want.logs)
		}
	}

	outcomes := map[string]int{}
	for _, v := range tomcatLoginVariants() {
		bound := tomcatLogin(attacker)
		res, _, err := tcExchange(gw, v.method, v.raw(gw, bound, "login"))
		if err != nil {
			t.Fatalf("%s: %v", v.class, err)
		}
		sid := tcSessionSet(res, bound)
		victim := tc.whoIs(t, sid) == "S001/U002"

		// A transfer in the session the browser now has, as an API client,
		// confirmed with the attacker's code when the gateway asks for one.
		tag := fmt.Sprintf("login-transfer-%d", v.id)
		transfer := tcProbe{method: "POST", target: "/transfer/execute", ctype: "application/x-www-form-urlencoded",
			body: "to_bank=0009&to_account=7777777&amount=990000", headers: []string{"Accept: application/json"}}
		tres, tbody, err := tcExchange(gw, "POST", transfer.raw(gw, sid, tag))
		if err != nil {
			t.Fatal(err)
		}
		outcome := fmt.Sprintf("login %d, transfer %d", res.StatusCode, tres.StatusCode)
		var out map[string]any
		json.Unmarshal([]byte(tbody), &out)
		if id, _ := out["challenge"].(string); tres.StatusCode == http.StatusUnauthorized && id != "" {
			attacker.c.Jar.SetCookies(gwURL, []*http.Cookie{{Name: "JSESSIONID", Value: sid, Path: "/"}})
			cres, _, _ := gwConfirmJSON(attacker, id, attacker.code())
			outcome += fmt.Sprintf(", confirmed %d", cres.StatusCode)
		}
		if victim {
			outcome += " (victim's session at Tomcat)"
		}
		outcomes[outcome]++
		for _, en := range tc.ledger(t) {
			switch {
			case en.Probe != tag:
			case tres.StatusCode != http.StatusUnauthorized:
				t.Errorf("login %s %s (%s, answered %d): the next transfer executed at Tomcat as %s/%s without a code (gateway %d)",
					v.method, v.target, v.class, res.StatusCode, en.Service, en.User, tres.StatusCode)
			case en.User != "U001":
				t.Errorf("login %s %s (%s, answered %d): the attacker's code released a transfer that Tomcat executed as %s/%s",
					v.method, v.target, v.class, res.StatusCode, en.Service, en.User)
			}
		}
	}
	t.Logf("%d login variants of the victim; straight to Tomcat %d log the victim in (%v); through the gateway, with the attacker's session: %v",
		len(tomcatLoginVariants()), len(direct), slices.Sorted(maps.Keys(direct)), outcomes)
}

// tcSessionSet is the JSESSIONID a response sets, or def.
func tcSessionSet(res *http.Response, def string) string {
	for _, c := range res.Cookies() {
		if c.Name == "JSESSIONID" && c.Value != "" {
			return c.Value
		}
	}
	return def
}

// whoIs asks Tomcat directly whom session sid is logged in as ("S001/U002"),
// "" for nobody.
func (tc *tomcat) whoIs(t *testing.T, sid string) string {
	t.Helper()
	if sid == "" {
		return ""
	}
	res, page, err := tcExchange(tc.addr, "GET", fmt.Sprintf("GET /menu HTTP/1.1\r\nHost: %s\r\nCookie: JSESSIONID=%s\r\nConnection: close\r\n\r\n", tc.addr, sid))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		return ""
	}
	_, rest, _ := strings.Cut(page, "<p>")
	who, _, _ := strings.Cut(rest, "</p>")
	return who
}

// What you see is what you confirm, against Tomcat (issue 6, classes 3 and
// 5). Bodies that Tomcat reads in its own way (RFC 2231 and RFC 2047 part
// names, repeated parts and fields, query before body, charsets, invisible
// and look-alike characters) are sent through the gateway; each one it holds
// is confirmed with the customer's code, and Tomcat's ledger must then hold
// exactly the values the confirm view showed, unless the view said that it
// could not show them ("doubt"). Refusing the body (400) is fine too.

// tcShownCase is one protected request whose shown fields are checked.
type tcShownCase struct {
	name   string
	target string
	ctype  string
	body   string
	// control: a plain browser request that must be held, shown exactly
	// and executed (no legitimate request refused).
	control bool
}

func tomcatShownCases() []tcShownCase {
	const form = "application/x-www-form-urlencoded"
	mp := "multipart/form-data; boundary=" + tcBoundary
	part := func(disposition, content string) string {
		return "--" + tcBoundary + "\r\nContent-Disposition: form-data; " + disposition + "\r\n\r\n" + content + "\r\n"
	}
	end := "--" + tcBoundary + "--\r\n"
	const csv = "1,0001,001,1234567,ﾔﾏﾀﾞ ﾀﾛｳ,250000\r\n"
	bulk := func(name, body string) tcShownCase {
		return tcShownCase{name: "bulk " + name, target: "/bulk/execute", ctype: mp, body: body + end}
	}
	transfer := func(name, target, ctype, body string) tcShownCase {
		return tcShownCase{name: "transfer " + name, target: target, ctype: ctype, body: body}
	}
	const rest = "&to_account=1234567&amount=50000"
	cases := []tcShownCase{
		{name: "bulk plain upload", target: "/bulk/execute", ctype: mp, body: part(`name="file"; filename="sogo.csv"`, csv) + end, control: true},
		{name: "transfer plain form", target: "/transfer/execute", ctype: form, body: "to_bank=0001" + rest, control: true},
		bulk("name* then name", part(`name*=UTF-8''file; filename="star.csv"`, csv)+part(`name="file"; filename="plain.csv"`, csv)),
		bulk("name then name*", part(`name="file"; filename="plain.csv"`, csv)+part(`name*=UTF-8''file; filename="star.csv"`, csv)),
		bulk("name* only", part(`name*=UTF-8''file; filename="star.csv"`, csv)),
		bulk("filename and filename*", part(`name="file"; filename="plain.csv"; filename*=UTF-8''star.csv`, csv)),
		bulk("filename* and filename", part(`name="file"; filename*=UTF-8''star.csv; filename="plain.csv"`, csv)),
		bulk("two Content-Disposition headers", "--"+tcBoundary+"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"first.csv\"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"second.csv\"\r\n\r\n"+csv+"\r\n"),
		bulk("name twice in one header", part(`name="x"; name="file"; filename="a.csv"`, csv)),
		bulk("upper-case parameter names", part(`NAME="file"; FILENAME="upper.csv"`, csv)),
		bulk("empty filename then a file", part(`name="file"; filename=""`, "")+part(`name="file"; filename="second.csv"`, csv)),
		bulk("two files", part(`name="file"; filename="shown.csv"`, csv)+part(`name="file"; filename="other.csv"`, csv)),
		bulk("FORM-DATA in upper case", "--"+tcBoundary+"\r\nContent-Disposition: FORM-DATA; name=\"file\"; filename=\"fd.csv\"\r\n\r\n"+csv+"\r\n"),
		bulk("unquoted filename with ;", part(`name=file; filename=a;b.csv`, csv)),
		bulk("escaped quote in filename", part(`name="file"; filename="a\"b.csv"`, csv)),
		bulk("RFC 2047 filename", part(`name="file"; filename="=?UTF-8?B?ZXZpbC5jc3Y=?="`, csv)),
		bulk("bidi override in filename", part("name=\"file\"; filename=\"kyuyo\u202Evsc.exe\"", csv)),
		transfer("repeated field", "/transfer/execute", form, "to_bank=0001&to_account=1111111&to_account=2222222&amount=50000"),
		transfer("query before body", "/transfer/execute?amount=1", form, "to_bank=0001"+rest),
		transfer("Latin-1 charset, UTF-8 bytes", "/transfer/execute", form+"; charset=ISO-8859-1", "to_bank=%E3%81%BF%E3%81%9A%E3%81%BB"+rest),
		transfer("Shift_JIS charset", "/transfer/execute", form+"; charset=Shift_JIS", "to_bank=%82%DD%82%B8%82%D9"+rest),
		transfer("encoded names", "/transfer/execute", form, "to_bank=0001&%74o_account=7654321&to_account=1234567&amount=50000"),
		transfer("invalid UTF-8", "/transfer/execute", form, "to_bank=%FF%FE"+rest),
		transfer("NUL in value", "/transfer/execute", form, "to_bank=0001&to_account=1234567%00999&amount=50000"),
		transfer("bidi override", "/transfer/execute", form, "to_bank=0001&to_account=%E2%80%AE7654321&amount=50000"),
		transfer("zero-width space", "/transfer/execute", form, "to_bank=0001&to_account=1234%E2%80%8B567&amount=50000"),
		transfer("full-width digits", "/transfer/execute", form, "to_bank=0001&to_account=1234567&amount=%EF%BC%99%EF%BC%99%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90"),
		transfer("semicolon separator", "/transfer/execute", form, "to_bank=0001;amount=1"+rest),
		transfer("multipart repeated field", "/transfer/execute", mp, part(`name="to_bank"`, "0001")+part(`name="to_account"`, "1111111")+part(`name="to_account"`, "2222222")+part(`name="amount"`, "50000")+end),
		transfer("multipart name* and name", "/transfer/execute", mp, part(`name="to_bank"`, "0001")+part(`name*=UTF-8''to_account`, "2222222")+part(`name="to_account"`, "1111111")+part(`name="amount"`, "50000")+end),
		transfer("multipart charset part", "/transfer/execute", mp, "--"+tcBoundary+"\r\nContent-Disposition: form-data; name=\"to_bank\"\r\nContent-Type: text/plain; charset=Shift_JIS\r\n\r\n\x82\xdd\x82\xb8\x82\xd9\r\n"+part(`name="to_account"`, "1234567")+part(`name="amount"`, "50000")+end),
		{name: "profile CR LF in e-mail", target: "/profile/update", ctype: form, body: "email=a%40example.jp%0D%0ABcc%3A%20b%40evil.example&phone=090"},
	}
	return cases
}

func TestTomcatConfirmShowsWhatTomcatExecutes(t *testing.T) {
	tomcatRuns(t, 4, tomcatShownRun)
}

func tomcatShownRun(t *testing.T, tc *tomcat, loose bool) {
	e := newTomcatEnv(t, tc)
	c := e.customer("S001", "U001")
	sid := tomcatLogin(c)
	c.json = true
	c.enrol()
	c.json = false
	gw := gwAddr(gatewayURL)

	outcomes := map[string]int{}
	for i, sc := range tomcatShownCases() {
		tag := fmt.Sprintf("shown-%d", i)
		p := tcProbe{method: "POST", target: sc.target, ctype: sc.ctype, body: sc.body, headers: []string{"Accept: application/json"}}
		res, body, err := tcExchange(gw, "POST", p.raw(gw, sid, tag))
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		id, _ := out["challenge"].(string)
		var view struct {
			Fields []struct{ Name, Value string }
			Doubt  string
		}
		held := res.StatusCode == http.StatusUnauthorized && id != ""
		if held {
			req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
			req.Header.Set("Accept", "application/json")
			vres, vbody := c.do(req)
			if vres.StatusCode != http.StatusOK || json.Unmarshal([]byte(vbody), &view) != nil {
				t.Fatalf("%s: confirm view %d\n%s", sc.name, vres.StatusCode, vbody)
			}
			if cres, cbody, _ := gwConfirmJSON(c, id, c.code()); cres.StatusCode >= 500 {
				t.Fatalf("%s: confirming: %d\n%s", sc.name, cres.StatusCode, cbody)
			}
		}
		var ran *tcEntry
		for _, en := range tc.ledger(t) {
			if en.Probe == tag {
				ran = &en
			}
		}
		outcome := fmt.Sprintf("gateway %d", res.StatusCode)
		switch {
		case held && view.Doubt != "":
			outcome = "held, doubt " + view.Doubt
		case held:
			outcome = "held, shown"
		}
		if ran == nil {
			outcome += ", not executed"
		}
		outcomes[outcome]++
		if sc.control && (!held || view.Doubt != "" || ran == nil) {
			t.Errorf("%s: a plain browser request was not held, shown and executed: gateway %d, doubt %q, executed %v\n%s", sc.name, res.StatusCode, view.Doubt, ran != nil, body)
		}
		switch {
		case ran == nil:
		case !held:
			t.Errorf("%s: Tomcat executed it without a code (gateway %d)", sc.name, res.StatusCode)
		case view.Doubt == "":
			shown := map[string][]string{}
			for _, f := range view.Fields {
				shown[f.Name] = append(shown[f.Name], f.Value)
			}
			for name, vals := range shown {
				got := ran.Params[name]
				if len(slices.Compact(slices.Clone(vals))) != 1 || vals[0] != got {
					t.Errorf("%s: the confirm view showed %s=%q; Tomcat executed %s=%q", sc.name, name, vals, name, got)
				} else if misleading(got) {
					t.Errorf("%s: the confirm view showed %s=%q with invisible or look-alike characters and no doubt", sc.name, name, got)
				}
			}
		}
	}
	t.Logf("%d bodies (%s Tomcat): %v", len(tomcatShownCases()), map[bool]string{false: "stock", true: "loose"}[loose], outcomes)
}

// misleading tells whether s holds characters a customer cannot see for what
// they are: controls, format characters (bidi overrides, zero-width), digits
// other than ASCII, the replacement character.
func misleading(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || unicode.Is(unicode.Cf, r) || (r > 0x7f && unicode.IsDigit(r)) {
			return true
		}
	}
	return false
}
