// Command herald is Herald's one binary: `serve` (HTTP API), `work` (River workers), `dev` (both,
// plus a capture SMTP server and a demo workspace), `migrate` and `keys create`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `usage: herald COMMAND [flags]

commands:
  serve                 run the HTTP API
  work                  run the River workers (sending)
  dev                   run API, workers and a capture SMTP server with a demo workspace
  migrate               apply Herald's and River's database migrations
  keys create --workspace NAME --scopes s1,s2
                        create an API key (and the workspace if new); prints only the key
  keys revoke --workspace NAME --id N
                        revoke the API key api_key:N (it stops working within HERALD_KEY_CACHE_TTL)
  consent verify --workspace NAME
                        check the workspace's consent ledger hash chain
  workspace delete NAME
                        delete a workspace: its keys stop working, its sending stops, and the
                        retention job purges its data after the grace period

configuration comes from DATABASE_URL and HERALD_* environment variables (see README.md)
`

// run executes one command and returns the process exit code. Errors are printed as one line.
func run(ctx context.Context, args []string, stdout, stderr *os.File, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stderr, getenv, modeServe)
	case "work":
		err = cmdServe(ctx, args[1:], stderr, getenv, modeWork)
	case "dev":
		err = cmdServe(ctx, args[1:], stderr, getenv, modeDev)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stderr, getenv)
	case "keys":
		err = cmdKeys(ctx, args[1:], stdout, stderr, getenv)
	case "consent":
		err = cmdConsent(ctx, args[1:], stdout, stderr, getenv)
	case "workspace":
		err = cmdWorkspace(ctx, args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "herald: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
