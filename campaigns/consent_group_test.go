package campaigns_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/smtpcapture"
)

// TestSendBatchConsentGroups runs one batch job of 2.2 consent groups in sequence and withdraws
// contacts while it sends, checking at each hand-off (in the relay, before its reply) the consent
// state committed at that moment:
//   - a withdrawal of a contact of the group being sent, started before that contact's hand-off,
//     waits for the group (the hand-off still sees the grant: it goes out, with no violation);
//   - that withdrawal is done before the next group's first hand-off: it waited for its group,
//     not for the whole batch;
//   - a withdrawal of a contact of a later group commits at once, and that contact is suppressed:
//     each group is decided when its turn comes, not when the batch starts.
//
// Without the consent lock the first withdrawal commits before its contact's hand-off (a
// violation); with one lock set for the whole batch it waits past the next group's start.
func TestSendBatchConsentGroups(t *testing.T) {
	t.Parallel()
	const total = 2*campaigns.ConsentGroup + 20
	inGroup, laterGroup := campaigns.ConsentGroup/2, campaigns.ConsentGroup+campaigns.ConsentGroup/2

	var (
		mu         sync.Mutex
		b          *sendBundle
		contacts   = map[string]int64{} // address -> contact id
		index      = map[string]int{}   // address -> position in the batch
		ids        []int64
		violations []string
		failures   []string
		inGroupAt  = make(chan time.Time, 1) // the in-group withdrawal's commit
	)
	ctx := context.Background()
	withdraw := func(contactID int64) (time.Time, error) {
		var at time.Time
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			return b.svc.Record(ctx, tx, &consent.Event{WorkspaceID: b.ws, ContactID: contactID, Purpose: "news",
				Action: consent.ActionWithdrawn, Source: consent.SourceOneClick, LawfulBasis: consent.BasisConsent, Actor: "test"})
		})
		at = time.Now()
		return at, err
	}
	hook := func(m *smtpcapture.Message) error {
		if len(m.To) != 1 {
			return nil
		}
		mu.Lock()
		i, ok := index[m.To[0]]
		contactID := contacts[m.To[0]]
		mu.Unlock()
		if !ok {
			return nil
		}
		fail := func(format string, args ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		switch i {
		case 0:
			// First hand-off of the first group: withdraw a contact of this group (it must wait
			// for the group) and one of the next group (it must not).
			go func() {
				at, err := withdraw(ids[inGroup])
				if err != nil {
					fail("in-group withdrawal: %v", err)
				}
				inGroupAt <- at
			}()
			later := make(chan error, 1)
			go func() {
				_, err := withdraw(ids[laterGroup])
				later <- err
			}()
			select {
			case err := <-later:
				if err != nil {
					fail("later-group withdrawal: %v", err)
				}
			case <-time.After(2 * time.Second): // within the relay's timeout
				fail("the withdrawal of a contact of a later group waited for the first group")
			}
			// Give the in-group withdrawal time to commit if nothing holds it.
			time.Sleep(200 * time.Millisecond)
		case campaigns.ConsentGroup:
			// First hand-off of the second group: the in-group withdrawal is done by now.
			select {
			case at := <-inGroupAt:
				inGroupAt <- at
			case <-time.After(3 * time.Second): // within the relay's timeout
				fail("the withdrawal of a contact of the first group was still waiting when the second group was handed off")
			}
		}
		var status string
		err := b.pool.QueryRow(ctx, `SELECT status FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 AND purpose = 'news'`,
			b.ws, contactID).Scan(&status)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			fail("read consent of recipient %d: %v", i, err)
		}
		if status != consent.ActionGranted {
			mu.Lock()
			violations = append(violations, fmt.Sprintf("recipient %d handed off with consent %q", i, status))
			mu.Unlock()
		}
		return nil
	}
	b = sendSetup(t, sendOpts{dataHook: hook})
	campaign := b.campaign(t, campaignOpts{})
	for i := range total {
		addr := fmt.Sprintf("c%03d@example.com", i)
		id := b.contact(t, addr, fmt.Sprintf("C %d", i), true)
		mu.Lock()
		contacts[addr], index[addr] = id, i
		ids = append(ids, id)
		mu.Unlock()
	}
	first, last := b.recipients(t, campaign, ids)
	if err := b.work(ctx, campaign, first, last, 1, 5); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	for _, v := range violations {
		t.Errorf("a withdrawal committed before the hand-off did not win: %s", v)
	}
	rows := b.rows(t, campaign)
	got := received(b.smtp)
	for i := range total {
		addr := fmt.Sprintf("c%03d@example.com", i)
		want, wantMsgs := "sent:", 1
		if i == laterGroup {
			want, wantMsgs = "suppressed:"+consent.ReasonWithdrawn, 0
		}
		if r := rows[addr]; r.Status+":"+r.Reason != want {
			t.Errorf("recipient %d: %s:%s, want %s", i, r.Status, r.Reason, want)
		}
		if n := len(got[addr]); n != wantMsgs {
			t.Errorf("recipient %d: %d messages received, want %d", i, n, wantMsgs)
		}
	}
	select {
	case <-inGroupAt:
	default:
		t.Error("the in-group withdrawal never committed")
	}
}
