// Command otpgate is Caddy with Caddy's standard modules and otpgate: run,
// adapt, reload and every other caddy subcommand behave as they do for
// caddy, plus the demo and the bank's administration commands.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/otpgate/otpgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
