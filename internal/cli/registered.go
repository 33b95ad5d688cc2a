package cli

import (
	"errors"
	"net/http"
	"net/url"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The bank's customer file: the mail addresses it registered for its
// customers and companies, to which alone setup links go by default
// (enrol_address registered) and which are told of every issue. The bank
// imports it after each change of its customer master.
//
//	POST /otpgate/registered?by=<administrator>   body: the CSV file
//	otpgate registered-import --file customers.csv --by <administrator>

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "registered-import",
		Usage: "--file <customers.csv> --by <administrator> [--config <path> [--adapter <name>]] [--address <interface>]",
		Short: "Import the mail addresses the bank registered for its customers",
		Long: "Reads the bank's customer file, CSV in UTF-8 with the columns service_id,user_id,email (a line\n" +
			"without user_id is an address of the company, told of every enrolment of its users), and\n" +
			"sends it to the running gateway. Setup links then go only to a customer's registered address\n" +
			"(enrol_address registered, the default). A customer in the file has exactly its addresses\n" +
			"afterwards; one not in it keeps hers. A wrong line refuses the whole file, naming the line.",
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file (to find the admin address)")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().String("address", "", "The address of the administration listener, if different from the config")
			cmd.Flags().String("db", "", "The otpgate store, when several are open: a bbolt database's absolute path")
			cmd.Flags().String("file", "", "The customer file (CSV: service_id,user_id,email)")
			cmd.Flags().String("by", "", "The administrator, for the audit trail")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(runRegisteredImport)
		},
	})
}

func runRegisteredImport(fl caddycmd.Flags) (int, error) {
	if fl.String("file") == "" || fl.String("by") == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--file and --by are required")
	}
	f, err := os.Open(fl.String("file"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer f.Close()
	q := url.Values{"by": {fl.String("by")}}
	if db := fl.String("db"); db != "" {
		q.Set("db", db)
	}
	return adminRequest(fl, http.MethodPost, "/otpgate/registered?"+q.Encode(), http.Header{"Content-Type": {"text/csv; charset=utf-8"}}, f)
}
