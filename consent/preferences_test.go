package consent_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/workspace"
)

// checkbox finds the rendered checkbox of a purpose and reports whether it is checked.
func checkbox(t *testing.T, page, name string) bool {
	t.Helper()
	m := regexp.MustCompile(`<input type="checkbox" id="p-` + name + `"[^>]*>`).FindString(page)
	if m == "" {
		t.Fatalf("no checkbox for %s in\n%s", name, page)
	}
	return strings.Contains(m, " checked")
}

func TestPreferenceCentrePage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	if _, err := consent.SettingsPut(ctx, p.pool, consent.Settings{WorkspaceID: p.ws.ID, PrivacyURL: "https://acme.example/privacy"}); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: p.ws.ID, Name: "offers", Title: "Special offers",
			Description: "Discounts, at most monthly.", Notice: "We send you offers."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before := p.events(t)
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	for _, want := range []string{
		`<html lang="en">`, `name="viewport"`, "<h1>Email preferences</h1>", "j***@example.com",
		"The news", "Special offers", "Discounts, at most monthly.", `aria-describedby="d-offers"`,
		`<label for="p-news">`, `<form method="post">`, `name="action" value="save"`, `name="action" value="unsubscribe_all"`,
		`href="https://acme.example/privacy"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"jane@example.com", "<script", "<iframe", "javascript:"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q", bad)
		}
	}
	if m := regexp.MustCompile(`\son[a-z]+=`).FindString(page); m != "" {
		t.Errorf("page holds an event handler %q", m)
	}
	if !checkbox(t, page, "news") || checkbox(t, page, "offers") {
		t.Fatalf("checkboxes do not show jane's choices (news granted, offers not)")
	}
	if p.events(t) != before {
		t.Fatal("GET recorded an event")
	}
	if testing.Verbose() {
		t.Log(page)
	}
}

func TestPreferenceCentreEscapesPurposeText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: p.ws.ID, Name: "evil",
			Title: `<script>alert("t")</script>`, Description: `"><img src=x onerror=alert(1)>`, Notice: "n"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Fatalf("purpose text not escaped:\n%s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;") {
		t.Fatalf("escaped title missing:\n%s", page)
	}
}

func TestPreferenceCentreSave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	// An earlier "unsubscribe from all" is lifted by opting in again.
	if _, err := p.svc.Suppress(ctx, p.pool, consent.Suppression{WorkspaceID: p.ws.ID, Address: "jane@example.com", Reason: consent.ReasonUnsubscribedAll}); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { // offers' notice is at version 2
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: p.ws.ID, Name: "offers", Title: "Offers", Notice: "New text."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before := p.events(t)
	status, page := p.postForm(t, p.newsTok, url.Values{"action": {"save"}, "purpose": {"offers", "offers"}})
	if status != http.StatusOK || !strings.Contains(page, "Your choices have been saved.") {
		t.Fatalf("%d %s", status, page)
	}
	if checkbox(t, page, "news") || !checkbox(t, page, "offers") {
		t.Fatal("the page after saving does not show the new choices")
	}
	if got := p.events(t) - before; got != 2 {
		t.Fatalf("%d events, want 2 (news withdrawn, offers granted)", got)
	}
	h, err := p.svc.History(ctx, p.pool, p.ws.ID, p.jane)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]consent.Event{}
	for _, e := range h[len(h)-2:] {
		got[e.Purpose] = e
		if e.Source != consent.SourcePreferenceCentre || e.LawfulBasis != consent.BasisConsent || e.Actor != consent.ActorRecipient ||
			e.Evidence == nil || e.Evidence.IP != "127.0.0.1" || e.Evidence.Address != "jane@example.com" {
			t.Fatalf("event %+v evidence %+v", e, e.Evidence)
		}
	}
	if got["news"].Action != consent.ActionWithdrawn || got["offers"].Action != consent.ActionGranted || got["offers"].NoticeVersion != 2 {
		t.Fatalf("events %+v", got)
	}
	if _, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com"); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("unsubscribed_all not lifted: %v", err)
	}
	if n := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues("preference_centre")); n != 1 {
		t.Fatalf("herald_unsubscribes_total{channel=preference_centre} = %v", n)
	}
	// Saving the same choices again records nothing.
	n := p.events(t)
	if status, _ := p.postForm(t, p.newsTok, url.Values{"action": {"save"}, "purpose": {"offers"}}); status != http.StatusOK || p.events(t) != n {
		t.Fatalf("re-save: %d, events %d -> %d", status, n, p.events(t))
	}
	p.verify(t)
}

func TestPreferenceCentreGrantKeepsOtherSuppressions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	if _, err := p.svc.Suppress(ctx, p.pool, consent.Suppression{WorkspaceID: p.ws.ID, Address: "jane@example.com", Reason: consent.ReasonComplaint}); err != nil {
		t.Fatal(err)
	}
	if status, page := p.postForm(t, p.newsTok, url.Values{"action": {"save"}, "purpose": {"news", "offers"}}); status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	if sp, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com"); err != nil || sp.Reason != consent.ReasonComplaint {
		t.Fatalf("a complaint was lifted by the preference centre: %+v %v", sp, err)
	}
}

func TestPreferenceCentreRejectsUnknownPurpose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	other, err := workspace.Ensure(ctx, p.pool, "other")
	if err != nil {
		t.Fatal(err)
	}
	p.purpose(t, other.ID, "deals") // another workspace's purpose is unknown here
	before := p.events(t)
	for _, purposes := range [][]string{{"offers", "nope"}, {"deals"}, {"<script>alert(1)</script>"}, {"NEWS"}, {""}} {
		status, page := p.postForm(t, p.newsTok, url.Values{"action": {"save"}, "purpose": purposes})
		if status != http.StatusBadRequest || strings.Contains(page, "<script>") {
			t.Fatalf("%v: %d %s", purposes, status, page)
		}
	}
	if got := p.events(t); got != before {
		t.Fatalf("%d events recorded", got-before)
	}
	if st := p.state(t, p.jane, "offers"); st != "" {
		t.Fatalf("offers is %q", st)
	}
}

func TestPreferenceCentreUnsubscribeAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	p.grant(t, p.jane, "offers")
	bob := p.contact(t, p.ws.ID, "bob@example.com")
	p.grant(t, bob, "news")
	status, page := p.postForm(t, p.newsTok, url.Values{"action": {"unsubscribe_all"}})
	if status != http.StatusOK || !strings.Contains(page, "unsubscribed from all marketing") {
		t.Fatalf("%d %s", status, page)
	}
	if checkbox(t, page, "news") || checkbox(t, page, "offers") {
		t.Fatal("the page still shows grants")
	}
	for _, name := range []string{"news", "offers"} {
		if st := p.state(t, p.jane, name); st != consent.ActionWithdrawn {
			t.Fatalf("%s is %q", name, st)
		}
	}
	if st := p.state(t, bob, "news"); st != consent.ActionGranted {
		t.Fatalf("bob's news is %q", st)
	}
	sp, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com")
	if err != nil || sp.Reason != consent.ReasonUnsubscribedAll || sp.Actor != consent.ActorRecipient {
		t.Fatalf("suppression %+v %v", sp, err)
	}
	// A marketing send to jane is now refused.
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		d, err := p.svc.Decide(ctx, tx, consent.Request{WorkspaceID: p.ws.ID, ContactID: &p.jane, Address: "jane@example.com",
			Stream: consent.StreamMarketing, Purpose: "news"})
		if err == nil && d.Allowed {
			t.Error("marketing to jane still allowed")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues("unsubscribe_all")); n != 1 {
		t.Fatalf("herald_unsubscribes_total{channel=unsubscribe_all} = %v", n)
	}
	n := p.events(t)
	if status, _ := p.postForm(t, p.newsTok, url.Values{"action": {"unsubscribe_all"}}); status != http.StatusOK || p.events(t) != n {
		t.Fatalf("repeat: %d, events %d -> %d", status, n, p.events(t))
	}
	p.verify(t)
}
