package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/otpgate/otpgate"
	"github.com/otpgate/otpgate/internal/demobank"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "demo",
		Usage: "[--keep]",
		Short: "Run the demo bank with the gateway in front of it",
		Long: `Starts the demo bank on 127.0.0.1:9080 and the gateway on :8080, configured by the
embedded Caddyfile.example, in a temporary folder holding the database and the
mailed setup links (.eml files). A random sealing key is generated unless
OTPGATE_SECRET_KEY is set. Ctrl-C stops both and removes the folder (unless --keep).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().Bool("keep", false, "Keep the temporary folder (database, mail) after stopping")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDemo)
		},
	})
}

func cmdDemo(fl caddycmd.Flags) (int, error) {
	dir, err := os.MkdirTemp("", "otpgate-demo-")
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("creating demo folder: %v", err)
	}
	if !fl.Bool("keep") {
		defer os.RemoveAll(dir)
	}
	// Caddyfile.example names its files relative to the working directory.
	if err := os.Chdir(dir); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if os.Getenv("OTPGATE_SECRET_KEY") == "" {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		os.Setenv("OTPGATE_SECRET_KEY", base64.StdEncoding.EncodeToString(key))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:9080")
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting the demo bank on 127.0.0.1:9080: %v", err)
	}
	bank := &http.Server{Handler: demobank.New(), ReadHeaderTimeout: 10 * time.Second}
	go bank.Serve(ln)
	defer bank.Shutdown(context.Background())

	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(otpgate.CaddyfileExample, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("adapting Caddyfile.example: %v", err)
	}
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "warning:", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting the gateway: %v", err)
	}
	defer caddy.Stop()

	fmt.Printf(`
otpgate demo
  web banking (through the gateway):  http://localhost:8080/
  the demo bank itself, ledger:       http://127.0.0.1:9080/ledger.json
  mailed setup links (.eml files):    %s
  database:                           %s

Demo users (password "demo"):
`, filepath.Join(dir, "mail"), filepath.Join(dir, "otpgate.db"))
	for _, u := range demobank.Users() {
		fmt.Printf("  service %s  user %s  %s %s\n", u.ServiceID, u.UserID, u.Company, u.Name)
	}
	fmt.Print(`
Log in, open a transfer: the gateway sends you to enrol a token first (STEP 1-3),
then asks for a code on every transfer, payment, bulk transfer, token change and
profile change. Ctrl-C stops.
`)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println("\nstopping")
	if err := caddy.Stop(); err != nil && !errors.Is(err, context.Canceled) {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}
