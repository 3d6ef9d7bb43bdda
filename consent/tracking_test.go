package consent_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
)

// setTrackingMode stores the workspace's tracking mode (other settings at their defaults).
func (b *bundle) setTrackingMode(t testing.TB, workspaceID int64, mode string) {
	t.Helper()
	if _, err := consent.SettingsPut(context.Background(), b.pool, consent.Settings{WorkspaceID: workspaceID, TrackingMode: mode}); err != nil {
		t.Fatal(err)
	}
}

// trackingPurpose creates the workspace's tracking purpose.
func (b *bundle) trackingPurpose(t testing.TB, workspaceID int64) consent.Purpose {
	t.Helper()
	p, err := consent.EnsureTrackingPurpose(context.Background(), b.pool, workspaceID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTrackingAllowed checks the answer for each mode against each state a contact can be in,
// all in one call, so that the answers must come back in the order of the contacts asked.
func TestTrackingAllowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws, other := b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "globex")
	b.trackingPurpose(t, ws)
	b.trackingPurpose(t, other)
	expires := b.now.Add(time.Hour)
	// The contacts' states, each recorded at b.now; an expiring one expires an hour later.
	states := []struct {
		name    string
		action  string // "" for no event
		expires bool
	}{
		{"none", "", false},
		{"granted", consent.ActionGranted, false},
		{"withdrawn", consent.ActionWithdrawn, false},
		{"granted-expiring", consent.ActionGranted, true},
		// A withdrawal never expires (the ledger refuses expires_at on one), so the mode
		// alone decides what an expired grant means.
		{"withdrawn-after-expiring", consent.ActionWithdrawn, false},
	}
	ids := map[string]int64{}
	for _, st := range states {
		id := b.contact(t, ws, st.name+"@example.com")
		ids[st.name] = id
		if st.action == "" {
			continue
		}
		if st.name == "withdrawn-after-expiring" {
			b.record(t, consent.Event{WorkspaceID: ws, ContactID: id, Purpose: consent.TrackingPurpose,
				Action: consent.ActionGranted, NoticeVersion: 1, ExpiresAt: &expires})
		}
		e := consent.Event{WorkspaceID: ws, ContactID: id, Purpose: consent.TrackingPurpose, Action: st.action, NoticeVersion: 1}
		if st.expires {
			e.ExpiresAt = &expires
		}
		b.record(t, e)
	}
	// A contact of the other workspace who granted tracking there: asked about in ws, it is a
	// contact with no state (ws has no such contact), whatever it chose in its own workspace.
	stranger := b.contact(t, other, "stranger@example.com")
	b.record(t, consent.Event{WorkspaceID: other, ContactID: stranger, Purpose: consent.TrackingPurpose,
		Action: consent.ActionWithdrawn, NoticeVersion: 1})

	type want map[string]bool // by state name, plus "stranger"
	for _, tc := range []struct {
		mode   string
		later  bool // asked after the expiring events expired
		answer want
	}{
		{consent.TrackingOptIn, false, want{"none": false, "granted": true, "withdrawn": false, "granted-expiring": true, "withdrawn-after-expiring": false, "stranger": false}},
		{consent.TrackingOptIn, true, want{"none": false, "granted": true, "withdrawn": false, "granted-expiring": false, "withdrawn-after-expiring": false, "stranger": false}},
		{consent.TrackingOptOut, false, want{"none": true, "granted": true, "withdrawn": false, "granted-expiring": true, "withdrawn-after-expiring": false, "stranger": true}},
		{consent.TrackingOptOut, true, want{"none": true, "granted": true, "withdrawn": false, "granted-expiring": true, "withdrawn-after-expiring": false, "stranger": true}},
		{consent.TrackingOff, false, want{"none": false, "granted": false, "withdrawn": false, "granted-expiring": false, "withdrawn-after-expiring": false, "stranger": false}},
		{consent.TrackingOff, true, want{"none": false, "granted": false, "withdrawn": false, "granted-expiring": false, "withdrawn-after-expiring": false, "stranger": false}},
	} {
		t.Run(fmt.Sprintf("%s later=%v", tc.mode, tc.later), func(t *testing.T) {
			b.setTrackingMode(t, ws, tc.mode)
			svc := *b.svc
			at := b.now
			if tc.later {
				at = expires.Add(time.Second)
			}
			svc.Now = func() time.Time { return at }
			// Every contact twice, in two different orders, with the stranger between them.
			var ask []int64
			var names []string
			for _, st := range states {
				ask, names = append(ask, ids[st.name]), append(names, st.name)
			}
			ask, names = append(ask, stranger), append(names, "stranger")
			for i := len(states) - 1; i >= 0; i-- {
				ask, names = append(ask, ids[states[i].name]), append(names, states[i].name)
			}
			got, err := svc.TrackingAllowed(ctx, b.pool, ws, ask)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ask) {
				t.Fatalf("%d answers for %d contacts", len(got), len(ask))
			}
			for i, name := range names {
				if got[i] != tc.answer[name] {
					t.Errorf("answer %d (%s) = %v, want %v", i, name, got[i], tc.answer[name])
				}
			}
			// A campaign batch gets the same answers from its consent decision (Track), whatever
			// the marketing decision (these contacts never granted "news").
			rs := make([]consent.BatchRecipient, len(ask))
			for i, id := range ask {
				rs[i] = consent.BatchRecipient{ContactID: id, Address: fmt.Sprintf("c%d@example.com", id)}
			}
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			ds, err := svc.DecideBatch(ctx, tx, ws, "news", rs)
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range names {
				if ds[i].Track != tc.answer[name] || ds[i].Allowed {
					t.Errorf("DecideBatch %d (%s) = %+v, want Track %v", i, name, ds[i], tc.answer[name])
				}
			}
		})
	}
	got, err := b.svc.TrackingAllowed(ctx, b.pool, ws, nil)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no contacts: %v %v", got, err)
	}
	// A workspace with no settings row is opt_in.
	fresh := b.ensureWorkspace(t, "initech")
	c := b.contact(t, fresh, "x@example.com")
	if got, err := b.svc.TrackingAllowed(ctx, b.pool, fresh, []int64{c}); err != nil || got[0] {
		t.Fatalf("workspace without settings: %v %v", got, err)
	}
	b.record(t, consent.Event{WorkspaceID: fresh, ContactID: c, Purpose: consent.TrackingPurpose, Action: consent.ActionGranted, NoticeVersion: 1})
	if got, err := b.svc.TrackingAllowed(ctx, b.pool, fresh, []int64{c}); err != nil || !got[0] {
		t.Fatalf("granted, workspace without settings: %v %v", got, err)
	}
}

func TestTrackingPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	a, g, i := b.ensureWorkspace(t, "acme"), b.ensureWorkspace(t, "globex"), b.ensureWorkspace(t, "initech")
	if _, err := consent.SettingsPut(ctx, b.pool, consent.Settings{WorkspaceID: a, TrackingMode: consent.TrackingOptOut, TrackingFullIP: true}); err != nil {
		t.Fatal(err)
	}
	b.setTrackingMode(t, g, consent.TrackingOff)
	got, err := b.svc.TrackingPolicies(ctx, b.pool, []int64{i, g, a, 999999})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]consent.TrackingPolicy{
		a:      {Mode: consent.TrackingOptOut, FullIP: true},
		g:      {Mode: consent.TrackingOff},
		i:      {Mode: consent.TrackingOptIn}, // no settings row
		999999: {Mode: consent.TrackingOptIn}, // no such workspace: the defaults
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for id, p := range want {
		if got[id] != p {
			t.Errorf("workspace %d: %+v, want %+v", id, got[id], p)
		}
	}
	if got, err := b.svc.TrackingPolicies(ctx, b.pool, nil); err != nil || len(got) != 0 {
		t.Fatalf("none asked: %v %v", got, err)
	}
}

func TestTrackingPurposeKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ws := b.ensureWorkspace(t, "acme")
	news := b.purpose(t, ws, "news")
	if news.Kind != consent.PurposeMarketing {
		t.Fatalf("news is %q", news.Kind)
	}
	tp := b.trackingPurpose(t, ws)
	if tp.Name != consent.TrackingPurpose || tp.Kind != consent.PurposeTracking || tp.Title != consent.TrackingDefaultTitle ||
		tp.Notice != consent.TrackingDefaultNotice || tp.NoticeVersion != 1 {
		t.Fatalf("tracking purpose %+v", tp)
	}
	if again := b.trackingPurpose(t, ws); again.ID != tp.ID {
		t.Fatalf("second ensure made purpose %d, first %d", again.ID, tp.ID)
	}
	if n := b.count(t, `SELECT count(*) FROM purpose_notices WHERE purpose_id = $1`, tp.ID); n != 1 {
		t.Fatalf("%d notice versions after two ensures", n)
	}
	mk, err := consent.MarketingPurposes(ctx, b.pool, ws)
	if err != nil || len(mk) != 1 || mk[0].Name != "news" {
		t.Fatalf("marketing purposes %+v %v", mk, err)
	}
	all, err := consent.Purposes(ctx, b.pool, ws)
	if err != nil || len(all) != 2 {
		t.Fatalf("purposes %+v %v", all, err)
	}

	save := func(p consent.Purpose) (consent.Purpose, error) {
		p.WorkspaceID = ws
		var saved consent.Purpose
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			saved, _, err = consent.PurposeSave(ctx, tx, p)
			return err
		})
		return saved, err
	}
	edited, err := save(consent.Purpose{Name: "tracking", Title: "Tracking", Notice: "We count opens."})
	if err != nil || edited.ID != tp.ID || edited.Kind != consent.PurposeTracking || edited.NoticeVersion != 2 {
		t.Fatalf("edit: %+v %v", edited, err)
	}
	for _, tc := range []struct {
		name  string
		p     consent.Purpose
		field string
	}{
		{"tracking as marketing", consent.Purpose{Name: "tracking", Kind: "marketing", Title: "T", Notice: "n"}, "name"},
		{"second tracking purpose", consent.Purpose{Name: "pixels", Kind: "tracking", Title: "T", Notice: "n"}, "kind"},
		{"unknown kind", consent.Purpose{Name: "x", Kind: "transactional", Title: "T", Notice: "n"}, "kind"},
		{"news turned into tracking", consent.Purpose{Name: "news", Kind: "tracking", Title: "T", Notice: "n"}, "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := save(tc.p)
			var fe *consent.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a field error for %s", err, tc.field)
			}
		})
	}

	// A marketing purpose named "tracking" from before tracking existed keeps the name: the
	// tracking purpose cannot be made, and saving it as tracking is refused.
	old := b.ensureWorkspace(t, "legacy")
	if _, err := b.pool.Exec(ctx, `INSERT INTO purposes (workspace_id, name, kind, title, notice) VALUES ($1, 'tracking', 'marketing', 'T', 'n')`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := consent.EnsureTrackingPurpose(ctx, b.pool, old); !errors.Is(err, consent.ErrTrackingNameTaken) {
		t.Fatalf("ensure over a marketing purpose named tracking: %v", err)
	}
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: old, Name: "tracking", Title: "T", Notice: "new"})
		return err
	})
	var fe *consent.FieldError
	if !errors.As(err, &fe) || fe.Field != "name" {
		t.Fatalf("saving the legacy purpose as tracking: %v", err)
	}
	mk, err = consent.MarketingPurposes(ctx, b.pool, old)
	if err != nil || !slices.ContainsFunc(mk, func(p consent.Purpose) bool { return p.Name == "tracking" }) {
		t.Fatalf("legacy marketing purposes %+v %v", mk, err)
	}
}
