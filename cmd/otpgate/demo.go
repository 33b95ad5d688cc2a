package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/token"
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
	if err := os.MkdirAll(filepath.Dir(demoBankTable), 0o755); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := os.WriteFile(demoBankTable, otpgate.BankTableSample, 0o644); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("writing the sample bank table: %v", err)
	}
	renewal, err := seedRenewal(os.Getenv("OTPGATE_SECRET_KEY"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("seeding the demo token: %v", err)
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
	fmt.Printf(`
Log in: a user without a token is sent to enrol one (STEP 1-3); then the gateway
asks for a code on every transfer, payment, bulk transfer, token change and
profile change. The bulk and payroll pages offer sample Zengin files to upload.

%s %s already has a token, expiring in 10 days, so renewal is open. Its codes:
  oathtool --totp -s 60 -b %s
  or add %s
  to a token app.

Ctrl-C stops.
`, renewal.user.Service, renewal.user.ID, renewal.secret, renewal.uri)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println("\nstopping")
	if err := caddy.Stop(); err != nil && !errors.Is(err, context.Canceled) {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}

// demoBankTable is where Caddyfile.example's bank_table leads from the
// demo's folder.
const demoBankTable = "internal/display/banks-sample.csv"

// demoRenewal is the demo customer whose token is seeded close to its
// expiry, so that renewal can be tried at once.
var demoRenewal = token.User{Service: "S002", ID: "U101"}

// demoRenewalValidity is how long the seeded token lives: "10 days" on the
// token page for the demo's first half day.
const demoRenewalValidity = 10*24*time.Hour + 12*time.Hour

// renewalToken is the seeded token: its customer and secret, base32 and as
// an otpauth:// URI for a token app.
type renewalToken struct {
	user        token.User
	secret, uri string
}

// seedRenewal writes, before the gateway opens the database, an active
// token for demoRenewal that expires in 10 days: inside the renew window,
// so the token page offers renewal and the confirm pages remind of it.
func seedRenewal(keyText string) (renewalToken, error) {
	key, err := seal.ParseKey(keyText)
	if err != nil {
		return renewalToken{}, err
	}
	sealer, err := seal.New(key)
	if err != nil {
		return renewalToken{}, err
	}
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		return renewalToken{}, err
	}
	db, err := boltstore.Open("otpgate.db", 5*time.Second)
	if err != nil {
		return renewalToken{}, err
	}
	now := time.Now()
	err = token.SeedActive(context.Background(), db, sealer, []token.User{demoRenewal}, [][]byte{secret}, now, demoRenewalValidity)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return renewalToken{}, err
	}
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	label := url.PathEscape("デモ信用組合:" + demoRenewal.Service + "-" + demoRenewal.ID)
	uri := "otpauth://totp/" + label + "?secret=" + b32 + "&issuer=" + url.QueryEscape("デモ信用組合") + "&algorithm=SHA1&digits=6&period=60"
	return renewalToken{user: demoRenewal, secret: b32, uri: uri}, nil
}
