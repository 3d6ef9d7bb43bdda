package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/consent"
	"herald/internal/dbtest"
	"herald/tracking"
)

// TestServeInbound runs `serve` with HERALD_INBOUND_ADDR and a different HERALD_BOUNCE_ADDR: both
// listeners are the one receiver, taking signed unsubscribe and bounce addresses alike and
// refusing anything else, and both close when the process stops.
func TestServeInbound(t *testing.T) {
	t.Parallel()
	const hashKey, tokenKeys, inboundDomain = "test-hash-key-0123456789", "1:test-token-key-0123456789", "mx.acme.example"
	keys, err := consent.NewKeys(hashKey, tokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	inboundAddr, bounceAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{"DATABASE_URL": dbtest.NewDB(t), "HERALD_ADDR": freeAddr(t), "HERALD_LOG_LEVEL": "warn",
		"HERALD_HASH_KEY": hashKey, "HERALD_TOKEN_KEYS": tokenKeys, "HERALD_INBOUND_DOMAIN": inboundDomain,
		"HERALD_INBOUND_ADDR": inboundAddr, "HERALD_BOUNCE_ADDR": bounceAddr}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 1)
	go func() { c, _, _ := runCmd(t, ctx, env, "serve"); done <- c }()
	waitHTTP(t, "http://"+env["HERALD_ADDR"]+"/readyz")

	unsub := consent.UnsubscribeAddress(inboundDomain, keys.Token(consent.Recipient{WorkspaceID: 1, ContactID: 2, PurposeID: 3}))
	bounce := tracking.VERP{Keys: keys, Domain: inboundDomain}.MessageAddress(1, 42) // the bounce domain defaults to the inbound one
	for _, addr := range []string{inboundAddr, bounceAddr} {
		for rcpt, want := range map[string]int{unsub: 250, bounce: 250, "postmaster@" + inboundDomain: 550, "victim@example.org": 550} {
			if got := rcptCode(t, addr, rcpt); got != want {
				t.Errorf("%s: RCPT %s answered %d, want %d", addr, rcpt, got, want)
			}
		}
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	for _, addr := range []string{inboundAddr, bounceAddr} {
		if c, err := smtp.Dial(addr); err == nil {
			c.Close()
			t.Errorf("%s still answers after shutdown", addr)
		}
	}
}

// rcptCode dials an SMTP server and returns its answer to RCPT TO:<rcpt> after MAIL FROM:<>.
func rcptCode(t *testing.T, addr, rcpt string) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	switch err := c.Rcpt(rcpt, nil); {
	case err == nil:
		return 250
	case errors.As(err, &se):
		return se.Code
	default:
		t.Fatalf("RCPT %s: %v", rcpt, err)
		return 0
	}
}
