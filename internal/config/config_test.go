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

func TestParseSMTPURLs(t *testing.T) {
	t.Parallel()
	a := config.SMTP{Host: "a.example", Port: 25, TLS: config.TLSNone}
	b := config.SMTP{Host: "b.example", Port: 587, Username: "u", Password: "p,w", TLS: config.TLSMandatory}
	for _, tc := range []struct {
		name string
		in   string
		want []config.SMTP
		err  string // the error names the entry; it must never echo a password
	}{
		{name: "one relay", in: "smtp://a.example:25?tls=none", want: []config.SMTP{a}},
		{name: "two in order, spaces", in: " smtp://a.example:25?tls=none , smtp://u:p%2Cw@b.example", want: []config.SMTP{a, b}},
		{name: "order kept", in: "smtp://u:p%2Cw@b.example,smtp://a.example:25?tls=none", want: []config.SMTP{b, a}},
		{name: "bad second entry", in: "smtp://a.example:25,smtp://b.example?tls=maybe", err: "relay 2 of 2: tls="},
		{name: "bad scheme", in: "smtp://a.example,http://b.example", err: "relay 2 of 2 does not start with smtp://"},
		{name: "trailing comma", in: "smtp://a.example,", err: "relay 2 of 2 is empty"},
		{name: "empty middle", in: "smtp://a.example,,smtp://b.example", err: "relay 2 of 3 is empty"},
		{name: "no host", in: "smtp://a.example,smtp://", err: "relay 2 of 2: no host"},
		{name: "bad port", in: "smtp://a.example:0,smtp://b.example", err: "relay 1 of 2: port"},
		{name: "repeated host and port", in: "smtp://a.example:25,smtps://x:y@a.example:25", err: "relay 2 of 2: a.example:25 repeats relay 1"},
		{name: "unescaped comma in a password", in: "smtp://u:se,cret@b.example", err: "%2C"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.ParseSMTPURLs(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				for _, secret := range []string{"cret", "x:y", "p,w", "p%2Cw"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q echoes a password", err)
					}
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("relay %d = %+v, want %+v", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseSMTPURLErrorHidesPassword(t *testing.T) {
	t.Parallel()
	// url.Parse's own error would repeat the URL, password included.
	for _, in := range []string{"smtp://u:hunter2@relay\x7f.example", "smtp://u:hunter2@relay.example\n", "smtp://u:hunter2@[::1"} {
		_, err := config.ParseSMTPURL(in)
		if err == nil || !strings.Contains(err.Error(), "not a URL") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseSMTPURL(%q) error = %v; want one without the password", in, err)
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
		c.InboundDomain != "mail.acme.example" || c.MarketingWorkers != 6 || c.CampaignWorkers != 8 || c.CampaignParallel != 16 {
		t.Errorf("config = %+v", c)
	}
	if c, err := config.FromEnv(env(map[string]string{"DATABASE_URL": "x"})); err != nil || c.InboundDomain != "localhost" {
		t.Errorf("default base URL on 127.0.0.1: inbound domain %q (%v); want localhost, an IP is no mail domain", c.InboundDomain, err)
	}
	if c.Relays == nil || len(c.Relays) != 1 || c.Relays[0] != c.SMTP {
		t.Errorf("one relay: Relays = %+v, SMTP = %+v", c.Relays, c.SMTP)
	}
	c, err = config.FromEnv(env(map[string]string{"DATABASE_URL": "x",
		"HERALD_SMTP_URL": "smtp://primary.example:25?tls=none,smtps://u:p@backup.example"}))
	if err != nil || len(c.Relays) != 2 || c.SMTP != c.Relays[0] || c.Relays[0].Host != "primary.example" ||
		c.Relays[1].Host != "backup.example" || !c.Relays[1].ImplicitTLS {
		t.Errorf("two relays: %+v %+v (%v)", c.SMTP, c.Relays, err)
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
		{map[string]string{"DATABASE_URL": "x", "HERALD_SMTP_URL": "smtp://h1,smtp://h2:99999"}, "HERALD_SMTP_URL: relay 2 of 2: port"},
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
