package mailer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"herald/consent"
)

// TestWithdrawalWinsRandomInterleavings is the property of the consent decision: for random
// interleavings of grants, withdrawals and marketing sends (many goroutines against the real
// database and a real SMTP server), no message is handed to SMTP while its recipient's committed
// consent state is not a grant. The SMTP server checks the state at every hand-off.
func TestWithdrawalWinsRandomInterleavings(t *testing.T) {
	t.Parallel()
	check := newHandoffCheck("news", 2*time.Millisecond)
	b := setup(t, setupOpts{dataHook: check.hook, workers: 12, poolSize: 12, keep: -1})
	check.attach(t, b)
	cs := seedContacts(t, b, b.wsA, "news", 24)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const rounds, perRound = 20, 30
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var flipErr error
	var errMu sync.Mutex
	for g := range 6 { // flippers: random grants and withdrawals
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 42))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := cs[r.IntN(len(cs))]
				action := consent.ActionWithdrawn
				if r.IntN(2) == 0 {
					action = consent.ActionGranted
				}
				if _, err := recordConsent(ctx, b, b.wsA, c.ID, "news", action); err != nil {
					errMu.Lock()
					flipErr = err
					errMu.Unlock()
					return
				}
				time.Sleep(time.Duration(r.IntN(1500)) * time.Microsecond)
			}
		}()
	}
	r := rand.New(rand.NewPCG(7, 7))
	for range rounds { // senders: bursts of marketing messages to random contacts
		batch := make([]seeded, perRound)
		for i := range batch {
			batch[i] = cs[r.IntN(len(cs))]
		}
		enqueueMarketing(t, b, b.wsA, "news", batch)
		time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
	}
	b.waitFinal(t, b.wsA, 60*time.Second)
	close(stop)
	wg.Wait()
	if flipErr != nil {
		t.Fatal(flipErr)
	}

	sent := b.count(t, "SELECT count(*) FROM messages WHERE workspace_id = $1 AND status = 'sent'", b.wsA)
	blocked := b.count(t, "SELECT count(*) FROM messages WHERE workspace_id = $1 AND status = 'suppressed' AND status_reason = 'withdrawn'", b.wsA)
	t.Logf("%d messages: %d sent, %d blocked as withdrawn, %d hand-offs checked", rounds*perRound, sent, blocked, check.checked.Load())
	if v := check.violations.Load(); v != 0 {
		t.Fatalf("%d marketing messages were handed to SMTP after a committed withdrawal (to %v)", v, check.bad)
	}
	if int64(sent) != check.checked.Load() {
		t.Errorf("%d recorded sent, %d hand-offs seen", sent, check.checked.Load())
	}
	if sent == 0 || blocked == 0 || sent+blocked != rounds*perRound {
		t.Errorf("no real interleaving: %d sent, %d blocked of %d", sent, blocked, rounds*perRound)
	}
	if n, err := consent.Verify(context.Background(), b.pool, b.wsA); err != nil {
		t.Fatalf("ledger after %d events: %v", n, err)
	}

	// The check can fail: a message handed to the relay directly, past the consent decision,
	// to a contact who has withdrawn, is caught.
	if _, err := recordConsent(ctx, b, b.wsA, cs[0].ID, "news", consent.ActionWithdrawn); err != nil {
		t.Fatal(err)
	}
	msg := fmt.Sprintf("From: news@acme.example\r\nTo: %s\r\nSubject: bypass\r\n\r\nhi\r\n", cs[0].Email)
	if err := smtp.SendMail(b.smtp.Addr(), nil, "news@acme.example", []string{cs[0].Email}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if v := check.violations.Load(); v != 1 {
		t.Fatalf("a send bypassing the decision was not caught (violations = %d)", v)
	}
}
