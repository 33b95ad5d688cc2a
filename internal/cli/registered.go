package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The bank's customer file: the mail addresses it registered for its
// customers and companies, to which alone setup links go by default
// (enrol_address registered) and which are told of every issue. The bank
// imports it after each change of its customer master.
//
//	POST /otpgate/registered?by=<administrator>   body: the CSV file
//	otpgate registered-import --file customers.csv --by <administrator>

func init() {
	registerAdmin(adminCommand{
		name: "registered-import", usage: "--file <customers.csv> --by <administrator> [--json]",
		short: "Import the mail addresses the bank registered for its customers",
		long: "Reads the bank's customer file, CSV in UTF-8 with the columns service_id,user_id,email (a line\n" +
			"without user_id is an address of the company, told of every enrolment of its users), and\n" +
			"sends it to the running gateway. Setup links then go only to a customer's registered address\n" +
			"(enrol_address registered, the default). A customer in the file has exactly its addresses\n" +
			"afterwards; one not in it keeps hers. A wrong line refuses the whole file, naming the line\n" +
			"(exit status 1); nothing of a refused file is imported.",
		flags: func(f *pflag.FlagSet) {
			f.String("file", "", "the customer file (CSV: service_id,user_id,email)")
			f.String("by", "", "the administrator's name, for the audit trail (required)")
		},
		run: runRegisteredImport,
	})
}

func runRegisteredImport(cmd *cobra.Command, a *adminClient) error {
	v, err := required(cmd, "file", "by")
	if err != nil {
		return err
	}
	file, err := os.ReadFile(v[0])
	if err != nil {
		return fail(exitRefused, "otpgate: reading the customer file: %v", err)
	}
	_, b, err := a.do(http.MethodPost, "/otpgate/registered", url.Values{"by": {v[1]}}, csvFile(file))
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(b)
		return err
	}
	var out struct {
		Customers int `json:"customers"`
		Companies int `json:"companies"`
		Addresses int `json:"addresses"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fail(exitUnreachable, "otpgate: the gateway's answer is not what this command reads (%v): is the gateway the same version?", err)
	}
	_, err = fmt.Fprintf(a.out, "Registered addresses imported: %d customers, %d companies, %d addresses.\n", out.Customers, out.Companies, out.Addresses)
	return err
}
