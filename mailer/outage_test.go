package mailer_test

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"herald/internal/config"
	"herald/mailer"
)

// TestNoRelayDoesNotUseAttempts: while no relay takes mail, a message waits (River snooze) without
// using up its attempts, so an outage longer than the retry schedule does not fail it.
func TestNoRelayDoesNotUseAttempts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() { // a relay that hangs up on every connection
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	relays, err := mailer.NewRelays([]mailer.RelayOptions{{
		SMTP: config.SMTP{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: config.TLSNone},
		HELO: "test.local", Timeout: time.Second, Size: 2, Logger: logger,
	}}, logger, nil, mailer.RelaysPolicy{Threshold: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer relays.Close()
	b := setup(t, setupOpts{transport: relays, maxAttempts: 2})
	id := b.send(t, b.keyA, "outage-1", `{"from":"a@example.com","to":"x@example.com","subject":"s","text":"t"}`)
	deadline := time.Now().Add(15 * time.Second)
	for accepted.Load() < 3 { // with attempts used, the second try would have failed it
		if time.Now().After(deadline) {
			t.Fatalf("only %d connection attempts", accepted.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The worker may be between a claim (sending) and its outcome (deferred) at this moment: wait
	// for the outcome; a failed message means the outage used up its attempts.
	for {
		res := b.do(t, "GET", "/v1/messages/"+id, b.keyA, "", "")
		if res.Body["status"] == mailer.StatusDeferred {
			break
		}
		if res.Body["status"] != mailer.StatusSending || time.Now().After(deadline) {
			t.Fatalf("after %d tries with no relay (max attempts 2): %s", accepted.Load(), res.Raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := b.count(t, `SELECT max(attempt) FROM river_job WHERE kind = 'mailer.send'`); n > 1 {
		t.Fatalf("the outage used %d attempts", n)
	}
}
