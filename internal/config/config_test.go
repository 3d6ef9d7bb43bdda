package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/internal/config"
)

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want config.SMTP
		err  string
	}{
		{in: "smtp://127.0.0.1:1025?tls=none", want: config.SMTP{Host: "127.0.0.1", Port: 1025, TLS: config.TLSNone}},
		{in: "smtp://relay.example.com", want: config.SMTP{Host: "relay.example.com", Port: 587, TLS: config.TLSMandatory}},
		{in: "smtp://u%40x:p%3Ass@relay.example.com:2525?tls=opportunistic",
			want: config.SMTP{Host: "relay.example.com", Port: 2525, Username: "u@x", Password: "p:ss", TLS: config.TLSOpportunistic}},
		{in: "smtps://u:p@relay.example.com", want: config.SMTP{Host: "relay.example.com", Port: 465, Username: "u", Password: "p", TLS: config.TLSMandatory, ImplicitTLS: true}},
		{in: "smtps://relay.example.com?tls=none", err: "cannot have tls=none"},
		{in: "http://relay.example.com", err: "scheme"},
		{in: "smtp://", err: "no host"},
		{in: "smtp://relay:99999", err: "port"},
		{in: "smtp://relay?tls=maybe", err: "tls="},
		{in: "smtp://relay?foo=1", err: "unknown parameter"},
		{in: "::not a url", err: "not a URL"},
	} {
		got, err := config.ParseSMTPURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSMTPURL(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSMTPURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(secret, []byte("postgres://from-file/herald\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	c, err := config.FromEnv(env(map[string]string{"DATABASE_URL_FILE": secret, "HERALD_WORKERS": "8",
		"HERALD_RETRY_BASE": "1s", "HERALD_BASE_URL": "https://mail.acme.example/"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://from-file/herald" || c.Workers != 8 || c.RetryBase != time.Second ||
		c.BaseURL != "https://mail.acme.example" || c.MessageIDDomain != "mail.acme.example" || c.SMTP.Port != 1025 ||
		c.InboundDomain != "mail.acme.example" || c.MarketingWorkers != 12 {
		t.Errorf("config = %+v", c)
	}
	if c, err := config.FromEnv(env(map[string]string{"DATABASE_URL": "x"})); err != nil || c.InboundDomain != "localhost" {
		t.Errorf("default base URL on 127.0.0.1: inbound domain %q (%v); want localhost, an IP is no mail domain", c.InboundDomain, err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "DATABASE_URL"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_WORKERS": "many"}, "HERALD_WORKERS"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_WORKERS": "-1"}, "HERALD_WORKERS"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_SMTP_TIMEOUT": "soon"}, "HERALD_SMTP_TIMEOUT"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_BASE_URL": "ftp://x"}, "HERALD_BASE_URL"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_SMTP_URL": "smtp://h?tls=bad"}, "HERALD_SMTP_URL"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_LOG_LEVEL": "loud"}, "HERALD_LOG_LEVEL"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_RETRY_BASE": "3h"}, "HERALD_RETRY_MAX"},
		{map[string]string{"DATABASE_URL_FILE": "/nonexistent/file"}, "DATABASE_URL_FILE"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_DB_POOL": "10", "HERALD_MARKETING_WORKERS": "8"}, "HERALD_MARKETING_WORKERS"},
		{map[string]string{"DATABASE_URL": "x", "HERALD_SUBSCRIBE_TTL": "forever"}, "HERALD_SUBSCRIBE_TTL"},
	} {
		if _, err := config.FromEnv(env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromEnv(%v) = %v, want error naming %s", tc.env, err, tc.want)
		}
	}
}
