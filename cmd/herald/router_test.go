package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"herald/internal/config"
	"herald/internal/db"
	"herald/internal/dbtest"
)

func TestReadyzReportsDatabaseDown(t *testing.T) {
	t.Parallel()
	pool, err := db.Open(context.Background(), dbtest.NewDB(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	a := &app{cfg: config.Default(), logger: slog.New(slog.NewTextHandler(io.Discard, nil)), pool: pool,
		reg: prometheus.NewRegistry(), mode: modeWork}
	srv := httptest.NewServer(a.router())
	defer srv.Close()
	status := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("Content-Type")
	}
	if code, _ := status("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with the database up = %d", code)
	}
	pool.Close() // the database is now unreachable for this process
	if code, ct := status("/readyz"); code != http.StatusServiceUnavailable || ct != "application/problem+json" {
		t.Errorf("/readyz with the database down = %d %s", code, ct)
	}
	if code, _ := status("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the database down = %d (the process is alive)", code)
	}
	if code, _ := status("/v1/messages"); code != http.StatusNotFound {
		t.Errorf("a work process serves the API: %d", code)
	}
}
