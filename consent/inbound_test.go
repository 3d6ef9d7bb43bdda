package consent_test

import (
	"context"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/inboundsmtp"
	"herald/internal/workspace"
)

const inboundDomain = "unsub.herald.example"

// startInbound serves the mailto receiver on a free loopback port and returns its address.
func startInbound(t *testing.T, p *pages) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &consent.Inbound{DB: p.pool, Service: p.svc, Domain: inboundDomain, Logger: p.svc.Logger, MaxMessageBytes: 4096}
	route, err := in.Route()
	if err != nil {
		t.Fatal(err)
	}
	srv := &inboundsmtp.Server{Domain: inboundDomain, Routes: []inboundsmtp.Route{route}, Logger: p.svc.Logger}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

const unsubscribeMail = "From: jane@example.com\r\nTo: unsubscribe\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n"

func TestInboundMailtoUnsubscribe(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	addr := startInbound(t, p)
	to := consent.UnsubscribeAddress(inboundDomain, p.newsTok)
	before := p.events(t)
	// The second mail has its local part's case folded by some relay on the way: still accepted,
	// and harmless.
	for _, rcpt := range []string{to, strings.ToUpper(to)} {
		if err := smtp.SendMail(addr, nil, "jane@example.com", []string{rcpt}, []byte(unsubscribeMail)); err != nil {
			t.Fatalf("send to %s: %v", rcpt, err)
		}
	}
	if got := p.events(t) - before; got != 1 {
		t.Fatalf("%d events, want 1", got)
	}
	if st := p.state(t, p.jane, "news"); st != consent.ActionWithdrawn {
		t.Fatalf("news is %q", st)
	}
	e := p.lastEvent(t, p.jane)
	if e.Source != consent.SourceOneClick || e.Proof["channel"] != "mailto" || e.Actor != consent.ActorRecipient ||
		e.Evidence == nil || e.Evidence.Address != "jane@example.com" {
		t.Fatalf("event %+v evidence %+v", e, e.Evidence)
	}
	if n := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues("mailto")); n != 1 {
		t.Fatalf("herald_unsubscribes_total{channel=mailto} = %v", n)
	}
	p.verify(t)
}

// rcptCode dials the receiver and returns the SMTP code answered to RCPT TO:<rcpt> (250 for OK).
func rcptCode(t *testing.T, addr, rcpt string) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("someone@example.net"); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(rcpt)
	var te *textproto.Error
	switch {
	case err == nil:
		return 250
	case errors.As(err, &te):
		return te.Code
	}
	t.Fatalf("RCPT %s: %v", rcpt, err)
	return 0
}

func TestInboundRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	addr := startInbound(t, p)
	other, err := workspace.Ensure(ctx, p.pool, "other")
	if err != nil {
		t.Fatal(err)
	}
	deals := p.purpose(t, other.ID, "deals")
	raw, _ := tokenEncoding.DecodeString(p.newsTok)
	raw[3] ^= 1
	forged := mustKeys(t, "1:not-the-real-token-key-000").Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: p.news.ID})

	for name, rcpt := range map[string]string{
		"flipped bit":      consent.UnsubscribeAddress(inboundDomain, tokenEncoding.EncodeToString(raw)),
		"forged":           consent.UnsubscribeAddress(inboundDomain, forged),
		"truncated":        consent.UnsubscribeAddress(inboundDomain, p.newsTok[:20]),
		"other domain":     consent.UnsubscribeAddress("example.org", p.newsTok),
		"relay attempt":    "victim@example.org",
		"postmaster":       "postmaster@" + inboundDomain,
		"no token":         "unsubscribe+@" + inboundDomain,
		"other local part": "subscribe+" + p.newsTok + "@" + inboundDomain,
	} {
		if code := rcptCode(t, addr, rcpt); code != 550 {
			t.Errorf("%s: RCPT answered %d, want 550", name, code)
		}
	}
	if code := rcptCode(t, addr, consent.UnsubscribeAddress(inboundDomain, p.newsTok)); code != 250 {
		t.Fatalf("a valid address: %d", code)
	}

	// A signed token naming another workspace's purpose passes RCPT (only the signature is known
	// there) and is refused at the end of DATA.
	foreign := p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane, PurposeID: deals.ID})
	err = smtp.SendMail(addr, nil, "x@example.net", []string{consent.UnsubscribeAddress(inboundDomain, foreign)}, []byte(unsubscribeMail))
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 {
		t.Fatalf("foreign purpose: %v", err)
	}
	// Oversized messages are refused, unread beyond the limit.
	big := unsubscribeMail + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 100)
	err = smtp.SendMail(addr, nil, "x@example.net", []string{consent.UnsubscribeAddress(inboundDomain, p.newsTok)}, []byte(big))
	if !errors.As(err, &te) || te.Code != 552 {
		t.Fatalf("oversized: %v", err)
	}
	if n := p.events(t); n != 1 { // jane's grant from setup
		t.Fatalf("%d events", n)
	}
}
