package campaigns_test

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/campaigns"
	"herald/consent"
	"herald/tracking"
)

// A compile-time check: tracking.Tracker is what the batch worker calls.
var _ campaigns.Tracker = (*tracking.Tracker)(nil)

// htmlPart returns the decoded text/html part of a raw message (searching nested multiparts).
func htmlPart(t *testing.T, raw []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(ct, cte string, body io.Reader) string
	walk = func(ct, cte string, body io.Reader) string {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			r := multipart.NewReader(body, params["boundary"])
			for {
				p, err := r.NextRawPart()
				if err == io.EOF {
					return ""
				}
				if err != nil {
					t.Fatal(err)
				}
				if s := walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); s != "" {
					return s
				}
			}
		}
		if mt != "text/html" {
			return ""
		}
		if strings.EqualFold(cte, "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body)
}

// TestCampaignTracking sends a campaign through the real batch worker and SMTP with a Tracker:
// the contact who allows tracking gets rewritten links and the pixel, the one who does not gets
// the rendered HTML untouched.
func TestCampaignTracking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	links := tracking.NewLinks(b.pool, 0, 0)
	b.worker.Tracking = &tracking.Tracker{Consent: b.svc, Links: links, BaseURL: sendTestBase}
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: b.ws, Name: consent.TrackingPurpose,
			Title: "Open and click tracking", Notice: "We count opens and clicks."})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tracked := b.contact(t, "ann@example.com", "Ann", true)
	untracked := b.contact(t, "bob@example.com", "Bob", true)
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return b.svc.Record(ctx, tx, &consent.Event{WorkspaceID: b.ws, ContactID: tracked, Purpose: consent.TrackingPurpose,
			Action: consent.ActionGranted, Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "test"})
	})
	if err != nil {
		t.Fatal(err)
	}
	const shop = `https://shop.example/sale?a=1&amp;b=2`
	c := b.campaign(t, campaignOpts{html: `<p>Hello {{.contact.name}}</p><p><a href="` + shop + `">Sale</a> <a href="mailto:help@acme.example">Help</a></p>` +
		`<p><a href="{{unsubscribe_url}}">Unsubscribe</a> <a href="{{view_online_url}}">Online</a></p><p>{{postal_address}}</p>`})
	first, last := b.recipients(t, c, []int64{tracked, untracked})
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	got := received(b.smtp)
	if len(got["ann@example.com"]) != 1 || len(got["bob@example.com"]) != 1 {
		t.Fatalf("received: %v", got)
	}
	ann, bob := htmlPart(t, got["ann@example.com"][0].Raw), htmlPart(t, got["bob@example.com"][0].Raw)

	clickRE := regexp.MustCompile(regexp.QuoteMeta(sendTestBase) + `/t/c/([a-z2-7]+)`)
	clicks := clickRE.FindAllStringSubmatch(ann, -1)
	if len(clicks) != 1 || strings.Contains(ann, "shop.example") || strings.Count(ann, sendTestBase+"/t/o/") != 1 {
		t.Errorf("tracked message: want one click URL instead of the shop link and one pixel:\n%s", ann)
	}
	if !strings.Contains(ann, "mailto:help@acme.example") || !strings.Contains(ann, sendTestBase+"/u/") || !strings.Contains(ann, sendTestBase+"/v/") {
		t.Errorf("tracked message: Herald's own links or mailto rewritten:\n%s", ann)
	}
	if len(clicks) == 1 {
		ref, err := tracking.ParseClickToken(b.svc.Keys, clicks[0][1])
		if err != nil || ref.WorkspaceID != b.ws || ref.CampaignID != c || ref.RecipientID != first {
			t.Errorf("click token %+v %v", ref, err)
		}
		l, err := links.Get(ctx, ref.LinkID)
		if err != nil || l.URL != "https://shop.example/sale?a=1&b=2" || l.CampaignID != c {
			t.Errorf("stored link %+v %v", l, err)
		}
	}
	if strings.Contains(bob, "/t/c/") || strings.Contains(bob, "/t/o/") || !strings.Contains(bob, shop) {
		t.Errorf("untracked message: want the original link and no pixel:\n%s", bob)
	}
	// Tracking off means the HTML is exactly what the worker renders without a Tracker.
	b.worker.Tracking = nil
	c2 := b.campaign(t, campaignOpts{html: `<p>Hello {{.contact.name}}</p><p><a href="` + shop + `">Sale</a></p>` +
		`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`})
	f2, l2 := b.recipients(t, c2, []int64{untracked})
	if err := b.work(ctx, c2, f2, l2, 1, 5); err != nil {
		t.Fatal(err)
	}
	b.worker.Tracking = &tracking.Tracker{Consent: b.svc, Links: links, BaseURL: sendTestBase}
	c3 := b.campaign(t, campaignOpts{html: `<p>Hello {{.contact.name}}</p><p><a href="` + shop + `">Sale</a></p>` +
		`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`})
	f3, l3 := b.recipients(t, c3, []int64{untracked})
	if err := b.work(ctx, c3, f3, l3, 1, 5); err != nil {
		t.Fatal(err)
	}
	bobs := received(b.smtp)["bob@example.com"]
	if len(bobs) != 3 {
		t.Fatalf("bob received %d messages", len(bobs))
	}
	if without, with := htmlPart(t, bobs[1].Raw), htmlPart(t, bobs[2].Raw); without != with {
		t.Errorf("a contact who does not allow tracking got other HTML with a Tracker:\n%s\nvs\n%s", with, without)
	}
}

// TestCampaignRestricted: a contact whose processing is restricted gets no campaign message
// (suppressed, reason restricted) although it granted the purpose and tracking; lifted, it gets
// the next campaign, with the pixel again.
func TestCampaignRestricted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := sendSetup(t, sendOpts{})
	b.worker.Tracking = &tracking.Tracker{Consent: b.svc, Links: tracking.NewLinks(b.pool, 0, 0), BaseURL: sendTestBase}
	if _, err := consent.EnsureTrackingPurpose(ctx, b.pool, b.ws); err != nil {
		t.Fatal(err)
	}
	ann := b.contact(t, "ann@example.com", "Ann", true)
	restrict := func(on bool) {
		t.Helper()
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			if on {
				if err := b.svc.Record(ctx, tx, &consent.Event{WorkspaceID: b.ws, ContactID: ann, Purpose: consent.TrackingPurpose,
					Action: consent.ActionGranted, Source: consent.SourceAPI, LawfulBasis: consent.BasisConsent, Actor: "test"}); err != nil {
					return err
				}
			}
			_, err := b.svc.Restrict(ctx, tx, b.ws, ann, on, consent.RequestChannelAPI, "", "test")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	html := `<p><a href="https://shop.example/">Sale</a></p><p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`
	restrict(true)
	c := b.campaign(t, campaignOpts{html: html})
	first, last := b.recipients(t, c, []int64{ann})
	if err := b.work(ctx, c, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	var status, reason string
	if err := b.pool.QueryRow(ctx, `SELECT status, reason FROM campaign_recipients WHERE id = $1`, first).Scan(&status, &reason); err != nil {
		t.Fatal(err)
	}
	if status != "suppressed" || reason != consent.ReasonRestricted || b.smtp.Count() != 0 {
		t.Fatalf("restricted recipient: %s %q, %d messages received", status, reason, b.smtp.Count())
	}
	restrict(false)
	c2 := b.campaign(t, campaignOpts{html: html})
	f2, l2 := b.recipients(t, c2, []int64{ann})
	if err := b.work(ctx, c2, f2, l2, 1, 5); err != nil {
		t.Fatal(err)
	}
	got := received(b.smtp)
	if len(got["ann@example.com"]) != 1 || !strings.Contains(htmlPart(t, got["ann@example.com"][0].Raw), sendTestBase+"/t/o/") {
		t.Fatalf("after lifting the restriction: %v", got)
	}
}
