// Command otpgate is the step-up OTP gateway: Caddy with Caddy's standard
// modules and otpgate, and a command line of its own (cli.Main): the
// bank's administration commands and the demo first, then Caddy's commands
// (run, adapt, reload …), which behave as they do in caddy.
package main

import (
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/otpgate/otpgate/caddymodule"
	"github.com/otpgate/otpgate/internal/cli"
)

func main() {
	cli.Main()
}
