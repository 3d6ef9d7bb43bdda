package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/config"
	"herald/internal/db"
	"herald/internal/workspace"
	"herald/migrations"
)

// setup reads the configuration and builds the logger every command uses.
func setup(getenv func(string) string, stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return cfg, nil, err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	return cfg, slog.New(h), nil
}

// openDB reads the configuration and connects a small pool, for the one-shot commands.
func openDB(ctx context.Context, getenv func(string) string, stderr io.Writer) (*slog.Logger, *pgxpool.Pool, error) {
	cfg, logger, err := setup(getenv, stderr)
	if err != nil {
		return nil, nil, err
	}
	pool, err := db.Open(ctx, cfg.DatabaseURL, 4)
	return logger, pool, err
}

// openCurrentDB is openDB for the commands that need the schema to be current.
func openCurrentDB(ctx context.Context, getenv func(string) string, stderr io.Writer) (*pgxpool.Pool, error) {
	_, pool, err := openDB(ctx, getenv, stderr)
	if err != nil {
		return nil, err
	}
	if err := migrations.CheckCurrent(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func cmdMigrate(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, pool, err := openDB(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := migrations.Migrate(ctx, pool, logger)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		logger.Info("schema is up to date")
	}
	return nil
}

func cmdKeys(ctx context.Context, args []string, stdout *os.File, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "revoke" {
		return cmdKeysRevoke(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: herald keys create --workspace NAME --scopes s1,s2 | herald keys revoke --workspace NAME --id N")
	}
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("workspace", "", "workspace name (created if new)")
	scopes := fs.String("scopes", "", "comma-separated scopes: messages:send, contacts:write, campaigns:write, admin")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--workspace is required")
	}
	sc, err := workspace.ParseScopes(*scopes)
	if err != nil {
		return err
	}
	if err := workspace.ValidName(*name); err != nil {
		return err
	}
	pool, err := openCurrentDB(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer pool.Close()
	ws, err := workspace.Ensure(ctx, pool, *name)
	if err != nil {
		return err
	}
	key, err := workspace.CreateKey(ctx, pool, ws.ID, sc)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, key)
	return err
}

// cmdKeysRevoke revokes one API key of a workspace by its id (the N of api_key:N, the actor the
// audit log and the ledger name for everything the key did). The revocation is audited.
func cmdKeysRevoke(ctx context.Context, args []string, stdout *os.File, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("workspace", "", "workspace name")
	id := fs.Int64("id", 0, "the key's id (api_key:ID in the audit log)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *id <= 0 {
		return errors.New("usage: herald keys revoke --workspace NAME --id N")
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
		return fmt.Errorf("workspace %q: %w", *name, err)
	}
	revoked, err := workspace.RevokeKey(ctx, pool, ws.ID, *id, workspace.ActorCLI)
	if err != nil {
		return err
	}
	msg := "revoked api_key:%d"
	if !revoked {
		msg = "api_key:%d was already revoked"
	}
	_, err = fmt.Fprintf(stdout, msg+"\n", *id)
	return err
}
