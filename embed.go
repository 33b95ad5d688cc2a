// Package otpgate holds what the repository ships beside the code: the
// example configuration that "otpgate demo" runs as it is, and the sample
// bank table it names.
package otpgate

import _ "embed"

// CaddyfileExample is Caddyfile.example: the gateway on :8080 in front of the
// demo bank on 127.0.0.1:9080.
//
//go:embed Caddyfile.example
var CaddyfileExample []byte

// BankTableSample is internal/display/banks-sample.csv, the bank and branch
// names Caddyfile.example's bank_table names: "otpgate demo" writes it to
// that path under its folder.
//
//go:embed internal/display/banks-sample.csv
var BankTableSample []byte
