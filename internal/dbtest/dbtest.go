// Package dbtest gives tests a real PostgreSQL database of their own: a template database is
// migrated once per schema version (under an advisory lock, so parallel test processes share it)
// and each call clones it, which takes milliseconds. The server comes from DATABASE_URL, which
// `make test` sets to the private cluster it starts.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/db"
	"herald/migrations"
)

// URL returns the server URL tests use, failing the test if none is set.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		tb.Fatal("DATABASE_URL is not set: run tests with `make test`, which starts a private PostgreSQL")
	}
	return u
}

// NewDB creates a fresh migrated database for the test, dropped at cleanup, and returns its URL.
func NewDB(tb testing.TB) string {
	tb.Helper()
	return newDB(tb, true)
}

// NewEmptyDB creates a fresh database with no schema at all (for migration tests), dropped at
// cleanup, and returns its URL.
func NewEmptyDB(tb testing.TB) string {
	tb.Helper()
	return newDB(tb, false)
}

func newDB(tb testing.TB, migrated bool) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := URL(tb)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("dbtest: connect: %v", err)
	}
	defer admin.Close(ctx)
	create := "CREATE DATABASE %s"
	if migrated {
		tpl, err := ensureTemplate(ctx, admin, base)
		if err != nil {
			tb.Fatalf("dbtest: template: %v", err)
		}
		create += " TEMPLATE " + tpl
	}
	name := "herald_test_" + randHex(8)
	if _, err := admin.Exec(ctx, fmt.Sprintf(create, name)); err != nil {
		tb.Fatalf("dbtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Logf("dbtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Logf("dbtest: drop %s: %v", name, err)
		}
	})
	return withDatabaseURL(base, name)
}

// NewPool returns a pool on a fresh migrated database (see NewDB), closed at cleanup.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	url := NewDB(tb)
	pool, err := db.Open(context.Background(), url, 20)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// ensureTemplate returns the name of a migrated template database for the current migrations,
// creating it if no test process has yet.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, base string) (string, error) {
	all, err := migrations.All()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range all {
		io.WriteString(h, m.Name)
		io.WriteString(h, m.SQL)
	}
	name := "herald_tpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		return "", err
	}
	defer admin.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(4242)") //nolint:errcheck

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", building)); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", building)); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, withDatabaseURL(base, building))
	if err != nil {
		return "", err
	}
	_, err = migrations.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pool.Close()
	if err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
		return "", err
	}
	return name, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
