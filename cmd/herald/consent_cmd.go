package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"herald/consent"
	"herald/internal/workspace"
)

const consentUsage = "usage: herald consent verify --workspace NAME"

// cmdConsent runs `herald consent verify`: it recomputes the workspace's consent ledger hash chain
// and reports the first event that fails, so tampering with the ledger is detected offline.
func cmdConsent(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New(consentUsage)
	}
	fs := flag.NewFlagSet("consent verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("workspace", "", "workspace name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *name == "" || fs.NArg() != 0 {
		return errors.New("--workspace is required (" + consentUsage + ")")
	}
	if err := workspace.ValidName(*name); err != nil {
		return err
	}
	pool, err := openCurrentDB(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer pool.Close()
	ws, err := workspace.Get(ctx, pool, *name)
	if err != nil {
		return err
	}
	n, err := consent.Verify(ctx, pool, ws.ID)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", ws.Name, err)
	}
	_, err = fmt.Fprintf(stdout, "workspace %s: %d events verify\n", ws.Name, n)
	return err
}
