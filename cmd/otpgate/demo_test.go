package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's first command: "otpgate demo" starts the bank and the
// gateway on Caddyfile.example, a protected operation is caught, and Ctrl-C
// stops both cleanly and removes the temporary folder.
func TestDemoRunsAndStopsOnInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "otpgate")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "demo")
	cmd.Env = append(os.Environ(), "OTPGATE_SECRET_KEY=")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	banner := make(chan string, 1)
	go func() {
		var sb strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			sb.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C stops") {
				banner <- sb.String()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var text string
	select {
	case text = <-banner:
	case <-time.After(30 * time.Second):
		t.Fatal("demo printed no banner within 30s")
	}
	for _, want := range []string{"http://localhost:8080/", "S001", "U001", "U002", "S002", "U101", `password "demo"`} {
		if !strings.Contains(text, want) {
			t.Errorf("banner lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`mailed setup links \(\.eml files\):\s+(\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("banner names no mail folder:\n%s", text)
	}
	folder := filepath.Dir(m[1])

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm("http://localhost:8080/login", url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "password": {"demo"}})
	if err != nil || res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login through the demo gateway: %v %v", res, err)
	}
	res.Body.Close()
	res, err = c.PostForm("http://localhost:8080/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Fatalf("transfer of an un-enrolled user: %d → %q; want 303 to /.otpgate/token saying it was not executed", res.StatusCode, res.Header.Get("Location"))
	}
	res, err = http.Get("http://127.0.0.1:9080/ledger.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("the bank executed something: %s", body)
	}

	// The seeded customer can renew at once; the sample bank table and the
	// contact line are loaded.
	if !strings.Contains(text, "S002 U101 already has a token, expiring in 10 days") || !strings.Contains(text, "oathtool --totp -s 60 -b ") {
		t.Errorf("banner does not name the token seeded for renewal:\n%s", text)
	}
	jar, _ = cookiejar.New(nil)
	c.Jar = jar
	if res, err = c.PostForm("http://localhost:8080/login", url.Values{"service_id": {"S002"}, "user_id": {"U101"}, "password": {"demo"}}); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res, err = c.Get("http://localhost:8080/.otpgate/token"); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`action="/.otpgate/token/renew"`, "（あと10日）", "0120-000-000"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("token page of the seeded customer lacks %q:\n%s", want, body)
		}
	}
	if _, err := os.Stat(filepath.Join(folder, "internal", "display", "banks-sample.csv")); err != nil {
		t.Errorf("the sample bank table is not where Caddyfile.example names it: %v", err)
	}

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v after Ctrl-C", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s of Ctrl-C")
	}
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Errorf("temporary folder %s left behind (%v)", folder, err)
	}
}
