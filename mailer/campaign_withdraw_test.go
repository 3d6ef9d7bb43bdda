package mailer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"herald/consent"
	"herald/mailer"
)

// TestCampaignSizedWithdrawals queues 10,000 marketing sends and, while the workers run, withdraws
// 1,000 of those contacts: the SMTP server receives nothing for a withdrawn contact after its
// withdrawal commit, every other contact gets exactly one message, and every withdrawn contact's
// message is either sent before the withdrawal or suppressed as withdrawn.
func TestCampaignSizedWithdrawals(t *testing.T) {
	if testing.Short() {
		t.Skip("campaign-sized")
	}
	t.Parallel()
	const total, withdrawn = 10000, 1000
	check := newHandoffCheck("news", 0)
	b := setup(t, setupOpts{dataHook: check.hook, workers: 32, poolSize: 16, keep: -1})
	check.attach(t, b)
	ctx := context.Background()
	start := time.Now()
	cs := seedContacts(t, b, b.wsA, "news", total)
	seeded := time.Since(start)
	// The whole campaign is queued before the workers take any of it.
	if err := b.river.QueuePause(ctx, mailer.QueueMarketing, nil); err != nil {
		t.Fatal(err)
	}
	enqueueMarketing(t, b, b.wsA, "news", cs)
	t.Logf("seeded %d contacts with grants in %s; queued in %s", total, seeded, time.Since(start)-seeded)
	if err := b.river.QueueResume(ctx, mailer.QueueMarketing, nil); err != nil {
		t.Fatal(err)
	}

	// Once sending has begun, withdraw every tenth contact, from 4 goroutines, from the end of the
	// list backwards: withdrawals and sends meet part-way, so some withdrawn contacts were sent to
	// before their withdrawal and the rest must be blocked.
	for deadline := time.Now().Add(time.Minute); check.checked.Load() < 100; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sending did not start")
		}
	}
	committed := make(map[string]time.Time, withdrawn)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := total - 1 - g*10; i >= 0; i -= 40 {
				at, err := recordConsent(ctx, b, b.wsA, cs[i].ID, "news", consent.ActionWithdrawn)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				committed[cs[i].Email] = at
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.waitFinal(t, b.wsA, 3*time.Minute)
	t.Logf("all %d final %s after the start", total, time.Since(start))

	if len(committed) != withdrawn {
		t.Fatalf("%d withdrawals recorded", len(committed))
	}
	if v := check.violations.Load(); v != 0 {
		t.Fatalf("%d messages handed to SMTP while the recipient's consent was withdrawn", v)
	}
	check.mu.Lock()
	defer check.mu.Unlock()
	late, sentBefore := 0, 0
	for i, c := range cs {
		got := check.received[c.Email]
		at, isWithdrawn := committed[c.Email]
		switch {
		case !isWithdrawn && len(got) != 1:
			t.Errorf("contact %d (%s) received %d messages, want 1", i, c.Email, len(got))
		case isWithdrawn && len(got) > 1:
			t.Errorf("withdrawn contact %s received %d messages", c.Email, len(got))
		case isWithdrawn && len(got) == 1 && got[0].After(at):
			late++
		case isWithdrawn && len(got) == 1:
			sentBefore++
		}
	}
	if late != 0 {
		t.Fatalf("%d withdrawn contacts received their message after the withdrawal commit", late)
	}
	blocked := b.count(t, `SELECT count(*) FROM messages WHERE workspace_id = $1 AND status = 'suppressed' AND status_reason = 'withdrawn'`, b.wsA)
	sent := b.count(t, `SELECT count(*) FROM messages WHERE workspace_id = $1 AND status = 'sent'`, b.wsA)
	t.Logf("withdrawn contacts: %d sent before their withdrawal, %d blocked; %d sent in all", sentBefore, blocked, sent)
	if sentBefore == 0 || blocked == 0 {
		t.Errorf("the withdrawals did not overlap the sending (%d sent before, %d blocked)", sentBefore, blocked)
	}
	if sentBefore+blocked != withdrawn || sent != total-blocked {
		t.Errorf("sent %d + blocked %d do not add up (sent before withdrawal %d)", sent, blocked, sentBefore)
	}
}
