package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"herald/consent"
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

// TestConsentRoutesWiring checks which consent routes are public and which need a key: the
// double opt-in form and the recipients' pages answer without one, the consent API does not.
func TestConsentRoutesWiring(t *testing.T) {
	t.Parallel()
	pool, err := db.Open(context.Background(), dbtest.NewDB(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	a := &app{cfg: config.Default(), logger: slog.New(slog.NewTextHandler(io.Discard, nil)), pool: pool, reg: reg,
		mode: modeServe, consent: &consent.Service{Keys: consent.DevKeys(), Metrics: consent.NewMetrics(reg)}}
	srv := httptest.NewServer(a.router())
	defer srv.Close()
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/subscribe", "form_key=fk_nope&email=a@example.com&purposes=news", http.StatusNotFound},
		{"GET", "/v1/purposes", "", http.StatusUnauthorized},
		{"GET", "/v1/suppressions", "", http.StatusUnauthorized},
		{"POST", "/v1/contacts/x/consents", "{}", http.StatusUnauthorized},
		{"GET", "/u/notatoken", "", http.StatusBadRequest},
		{"POST", "/u/notatoken", "List-Unsubscribe=One-Click", http.StatusBadRequest},
		{"GET", "/subscribe/confirm/notatoken", "", http.StatusNotFound},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.body != "" && tc.body != "{}" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, res.StatusCode, tc.want)
		}
	}
}
