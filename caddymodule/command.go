package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The bank's administration commands. Like "caddy reload" they talk to the
// running server's admin API, because the running process holds the
// database's lock.
func init() {
	adminCommand("token-status", "--service <id> --user <id>", "Show a customer's token state",
		"Shows the state, expiry, lock and masked mail address of one customer's token.",
		http.MethodGet, "/otpgate/token", []string{"service", "user"})
	adminCommand("token-list", "[--service <id>]", "List tokens (of one service)",
		"Lists every token record, or those of one service; secrets are never shown.",
		http.MethodGet, "/otpgate/tokens", []string{"service"})
	adminCommand("token-reset", "--service <id> --user <id> --by <administrator>", "Reset a lost token (revoke and unlock)",
		"For a customer who changed or lost their phone without revoking: the token is revoked and the\n"+
			"customer unlocked, so they can issue a new one. The customer is told by mail; the audit trail\n"+
			"names the administrator.",
		http.MethodPost, "/otpgate/reset", []string{"service", "user", "by"})
	adminCommand("token-unlock", "--service <id> --user <id> --by <administrator>", "Unlock a customer locked by wrong codes",
		"Clears the lock and the failure count after the bank has verified the customer. Audited and mailed.",
		http.MethodPost, "/otpgate/unlock", []string{"service", "user", "by"})
	adminCommand("require-otp", "--service <id> --by <administrator>", "Require OTP for every user of a service",
		"Switches OTP on for a company: from now on, users without an active token are sent to enrolment\n"+
			"on protected operations.",
		http.MethodPost, "/otpgate/require", []string{"service", "by"})
	adminCommand("token-rekey", "--by <administrator>", "Re-seal every TOTP secret under the current key",
		"After a key rotation (new secret_key, old one in retired_keys): seals every secret again under the\n"+
			"new key, so the old key can be removed from the configuration.",
		http.MethodPost, "/otpgate/rekey", []string{"by"})
	adminCommand("audit-export", "[--since <RFC 3339 time>]", "Export the audit trail as JSON lines",
		"Writes every audit record (at or after --since) to standard output, one JSON object a line.",
		http.MethodGet, "/otpgate/audit", []string{"since"})
}

func adminCommand(name, usage, short, long, method, path string, params []string) {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  name,
		Usage: usage + " [--config <path> [--adapter <name>]] [--address <interface>]",
		Short: short,
		Long:  long,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file (to find the admin address)")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().String("address", "", "The address of the administration listener, if different from the config")
			cmd.Flags().String("db", "", "The otpgate store, when several are open: a bbolt database's absolute path")
			for _, p := range params {
				cmd.Flags().String(p, "", p)
			}
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return runAdmin(fl, method, path, params)
			})
		},
	})
}

func runAdmin(fl caddycmd.Flags, method, path string, params []string) (int, error) {
	q := url.Values{}
	if db := fl.String("db"); db != "" {
		q.Set("db", db)
	}
	in := map[string]string{}
	for _, p := range params {
		if v := fl.String(p); v != "" {
			q.Set(p, v)
			in[p] = v
		} else if method == http.MethodPost {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--%s is required", p)
		}
	}
	var body io.Reader
	uri := path
	if method == http.MethodPost {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
		if q.Has("db") {
			uri += "?db=" + url.QueryEscape(q.Get("db"))
		}
	} else if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	return adminRequest(fl, method, uri, nil, body)
}

// adminRequest sends one request to the admin API of the configuration
// fl names and copies the answer to standard output.
func adminRequest(fl caddycmd.Flags, method, uri string, header http.Header, body io.Reader) (int, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("couldn't determine admin API address: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, header, body)
	if err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}
