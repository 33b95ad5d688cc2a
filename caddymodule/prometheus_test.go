package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// prometheusBin is Debian's Prometheus (apt-get install prometheus).
const prometheusBin = "/usr/bin/prometheus"

// prometheusPort is a free port of the range 19090-19099 on loopback.
func prometheusPort(t *testing.T) int {
	t.Helper()
	for port := 19090; port <= 19099; port++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port in 127.0.0.1:19090-19099 for Prometheus")
	return 0
}

// promQuery asks Prometheus at base for q and returns the result vector.
func promQuery(t *testing.T, base, q string) []struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
} {
	t.Helper()
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Status != "success" {
		t.Fatalf("query %s: %d %s", q, res.StatusCode, b)
	}
	return out.Data.Result
}

// A real Prometheus (Debian's, started here on loopback) scrapes the
// gateway's Caddy metrics endpoint during a customer's journey, answers
// PromQL queries for the otpgate series, and loads the alerting rules
// shipped in deploy/prometheus without an evaluation error. Skipped
// without Prometheus, failed under CI=true.
func TestRealPrometheusScrapesGateway(t *testing.T) {
	if _, err := os.Stat(prometheusBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (CI installs Debian's prometheus package)", prometheusBin, err)
		}
		t.Skipf("%s not installed (apt-get install prometheus)", prometheusBin)
	}
	e := newEnv(t, envOptions{})
	rules, err := filepath.Abs("../deploy/prometheus/otpgate-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: otpgate
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:%d']
`, rules, adminPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := prometheusPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prometheusBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+fmt.Sprintf("127.0.0.1:%d", port))
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30 s for %s", what)
			}
		}
	}
	waitFor("Prometheus to be ready", func() bool {
		res, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// The journey: enrol, hold, a wrong code, the right one.
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	gwConfirmForm(c, id, c.wrongCode(), nil)
	if res, body, _ := gwConfirmForm(c, id, c.code(), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("right code: %d\n%s", res.StatusCode, body)
	}

	value := func(q string) float64 {
		r := promQuery(t, base, q)
		if len(r) != 1 || len(r[0].Value) != 2 {
			return -1
		}
		s, _ := r[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return -1
		}
		return v
	}
	waitFor("Prometheus to scrape the journey", func() bool {
		return value(`sum(caddy_otpgate_code_checks_total{result="ok"})`) >= 1 &&
			value(`sum(caddy_otpgate_code_checks_total{result="invalid"})`) >= 1
	})
	if v := value(`sum(caddy_otpgate_releases_total{kind="transfer",outcome="2xx"})`); v < 1 {
		t.Errorf("releases of transfers answered 2xx: %v; want at least 1", v)
	}
	if v := value(`count(count by (__name__) ({__name__=~"caddy_otpgate_.+",job="otpgate"}))`); v < 15 {
		t.Errorf("Prometheus holds %v otpgate series names; want every family's", v)
	}
	if v := value(`up{job="otpgate"}`); v != 1 {
		t.Errorf("up = %v; want the gateway scraped", v)
	}

	// The shipped rules load and evaluate without error.
	waitFor("the rules to be evaluated", func() bool {
		res, err := http.Get(base + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var out struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name       string `json:"name"`
						Health     string `json:"health"`
						LastError  string `json:"lastError"`
						Evaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if json.NewDecoder(res.Body).Decode(&out) != nil || len(out.Data.Groups) != 1 {
			return false
		}
		for _, r := range out.Data.Groups[0].Rules {
			if r.Health == "err" {
				t.Fatalf("rule %s: %s", r.Name, r.LastError)
			}
			if r.Health != "ok" {
				return false
			}
		}
		return true
	})
}
