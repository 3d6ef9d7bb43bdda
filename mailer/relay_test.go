package mailer_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"herald/internal/config"
	"herald/internal/smtpcapture"
	"herald/mailer"
)

func testMsg(t *testing.T) mailer.Composed {
	t.Helper()
	m := gomail.NewMsg()
	if err := m.From("a@acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := m.To("x@example.com"); err != nil {
		t.Fatal(err)
	}
	m.Subject("relay")
	m.SetBodyString(gomail.TypeTextPlain, "t")
	return mailer.Composed{Msg: m}
}

func TestRelayTLSPolicyAndAuth(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS, err := smtpcapture.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	withTLS, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0", TLSConfig: serverTLS, AuthUser: "u", AuthPass: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer withTLS.Close()
	plain, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	for _, tc := range []struct {
		name      string
		server    *smtpcapture.Server
		url       string
		ok        bool
		temporary bool
	}{
		{"mandatory TLS with auth", withTLS, "smtp://u:p@127.0.0.1:%d?tls=mandatory", true, false},
		{"opportunistic TLS with auth", withTLS, "smtp://u:p@127.0.0.1:%d?tls=opportunistic", true, false},
		{"wrong password: deferred, never failed", withTLS, "smtp://u:wrong@127.0.0.1:%d?tls=mandatory", false, true},
		{"mandatory TLS, relay without STARTTLS", plain, "smtp://127.0.0.1:%d?tls=mandatory", false, true},
		{"opportunistic TLS, relay without STARTTLS", plain, "smtp://127.0.0.1:%d?tls=opportunistic", true, false},
		{"no TLS", plain, "smtp://127.0.0.1:%d?tls=none", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.ParseSMTPURL(fmtPort(tc.url, tc.server.Port()))
			if err != nil {
				t.Fatal(err)
			}
			relay, err := mailer.NewRelay(mailer.RelayOptions{SMTP: cfg, HELO: "test.local", Timeout: 5 * time.Second,
				Size: 2, Logger: quiet, TLSConfig: clientTLS})
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			before := tc.server.Count()
			res, err := relay.Send(context.Background(), testMsg(t))
			if tc.ok {
				if err != nil || res.Code != 250 || tc.server.Count() != before+1 {
					t.Fatalf("send: %+v %v", res, err)
				}
				return
			}
			var f *mailer.SendFailure
			if !errors.As(err, &f) || f.Result.Temporary != tc.temporary || tc.server.Count() != before {
				t.Fatalf("send: %+v %v; want a failure with temporary=%v", res, err, tc.temporary)
			}
			if strings.Contains(err.Error(), "x@example.com") || strings.Contains(f.Result.Reply, "x@example.com") {
				t.Errorf("failure text carries the recipient address: %v", err)
			}
		})
	}
}

// TestRelayReusesConnections checks that deliveries share pooled connections and that a
// connection the relay closed while idle is replaced without failing the delivery.
func TestRelayReusesConnections(t *testing.T) {
	t.Parallel()
	srv, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := config.ParseSMTPURL(fmtPort("smtp://127.0.0.1:%d?tls=none", srv.Port()))
	relay, err := mailer.NewRelay(mailer.RelayOptions{SMTP: cfg, HELO: "test.local", Timeout: 5 * time.Second, Size: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	for range 5 {
		if _, err := relay.Send(context.Background(), testMsg(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Restart the server on the same port: the pooled connection is now dead.
	port := srv.Port()
	srv.Close()
	srv2, err := smtpcapture.Start(smtpcapture.Options{Addr: fmtPort("127.0.0.1:%d", port)})
	if err != nil {
		t.Skipf("port %d not free again: %v", port, err)
	}
	defer srv2.Close()
	if res, err := relay.Send(context.Background(), testMsg(t)); err != nil || res.Code != 250 || srv2.Count() != 1 {
		t.Fatalf("send after the relay dropped the pooled connection: %+v %v", res, err)
	}
}

func TestRelayRejectionTextHasNoAddress(t *testing.T) {
	t.Parallel()
	srv, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0", RcptHook: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, _ := config.ParseSMTPURL(fmtPort("smtp://127.0.0.1:%d?tls=none", srv.Port()))
	relay, err := mailer.NewRelay(mailer.RelayOptions{SMTP: cfg, HELO: "test.local", Timeout: 5 * time.Second, Size: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	res, err := relay.Send(context.Background(), testMsg(t))
	if err == nil || res.Temporary || res.Code != 550 || res.Enhanced != "5.1.1" {
		t.Fatalf("send: %+v %v", res, err)
	}
	if strings.Contains(err.Error(), "x@example.com") || strings.Contains(res.Reply, "x@example.com") {
		t.Errorf("failure text carries the recipient address: %q / %q", err, res.Reply)
	}
	// The connection survives a refused recipient and is reused for the next delivery.
	if _, err := relay.Send(context.Background(), testMsg(t)); err == nil {
		t.Fatal("second send accepted")
	}
}
