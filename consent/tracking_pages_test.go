package consent_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"herald/consent"
	"herald/internal/db"
)

const trackingLabel = "Let us know when you open our emails and which links you click"

// trackingBox reports whether the page shows the tracking checkbox, and whether it is checked.
func trackingBox(page string) (shown, checked bool) {
	m := regexp.MustCompile(`<input type="checkbox" id="p-tracking"[^>]*>`).FindString(page)
	return m != "", strings.Contains(m, " checked")
}

// topics returns the page's topic fieldset.
func topics(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<legend>Choose the email you want to receive</legend>.*?</fieldset>`).FindString(page)
	if m == "" {
		t.Fatalf("no topics in\n%s", page)
	}
	return m
}

func (p *pages) allowed(t *testing.T, contactID int64) bool {
	t.Helper()
	got, err := p.svc.TrackingAllowed(context.Background(), p.pool, p.ws.ID, []int64{contactID})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

// save posts the preference centre's form with the boxes ticked.
func (p *pages) save(t *testing.T, ticked ...string) string {
	t.Helper()
	status, page := p.postForm(t, p.newsTok, url.Values{"action": {"save"}, "purpose": ticked})
	if status != http.StatusOK || !strings.Contains(page, "Your choices have been saved.") {
		t.Fatalf("save %v: %d %s", ticked, status, page)
	}
	return page
}

func TestPreferenceCentreTrackingOptIn(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	if shown, checked := trackingBox(page); !shown || checked {
		t.Fatalf("opt-in, no choice: tracking box shown %v checked %v\n%s", shown, checked, page)
	}
	for _, want := range []string{trackingLabel, "<legend>" + consent.TrackingDefaultTitle + "</legend>",
		"tiny invisible image (a web beacon)", `aria-describedby="d-tracking"`, "also turns tracking off"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if tp := topics(t, page); strings.Contains(tp, "tracking") || !strings.Contains(tp, `id="p-news"`) {
		t.Fatalf("tracking listed among the topics: %s", tp)
	}

	before := p.events(t)
	page = p.save(t, "news", "tracking")
	if n := p.events(t) - before; n != 1 {
		t.Fatalf("%d events for ticking tracking", n)
	}
	e := p.lastEvent(t, p.jane)
	if e.Purpose != consent.TrackingPurpose || e.Action != consent.ActionGranted || e.Source != consent.SourcePreferenceCentre ||
		e.NoticeVersion != 1 || e.Actor != consent.ActorRecipient || e.Evidence == nil || e.Evidence.IP != "127.0.0.1" ||
		e.Evidence.UserAgent != "MailboxProvider/1.0" || e.Evidence.Address != "jane@example.com" {
		t.Fatalf("grant event %+v evidence %+v", e, e.Evidence)
	}
	if _, checked := trackingBox(page); !checked || !p.allowed(t, p.jane) {
		t.Fatal("tracking not on after ticking it")
	}
	p.save(t, "news", "tracking") // the same again records nothing
	if n := p.events(t) - before; n != 1 {
		t.Fatalf("%d events after saving the same choice", n)
	}
	page = p.save(t, "news")
	if e := p.lastEvent(t, p.jane); e.Purpose != consent.TrackingPurpose || e.Action != consent.ActionWithdrawn {
		t.Fatalf("untick: last event %+v", e)
	}
	if _, checked := trackingBox(page); checked || p.allowed(t, p.jane) {
		t.Fatal("tracking still on after unticking it")
	}
	if st := p.state(t, p.jane, "news"); st != consent.ActionGranted {
		t.Fatalf("news is %q after tracking changes", st)
	}
	// Withdrawing tracking is not an unsubscribe.
	if n := testutil.ToFloat64(p.svc.Metrics.Unsubscribes.WithLabelValues(consent.ChannelPreferenceCentre)); n != 0 {
		t.Fatalf("herald_unsubscribes_total{channel=preference_centre} = %v", n)
	}
	p.verify(t)
}

func TestPreferenceCentreTrackingOptOut(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	p.setTrackingMode(t, p.ws.ID, consent.TrackingOptOut)
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if shown, checked := trackingBox(page); status != http.StatusOK || !shown || !checked {
		t.Fatalf("opt-out, no choice: %d shown %v checked %v", status, shown, checked)
	}
	before := p.events(t)
	p.save(t, "news", "tracking") // left ticked: already tracked, nothing to record
	if p.events(t) != before || p.state(t, p.jane, consent.TrackingPurpose) != "" {
		t.Fatal("keeping the default recorded an event")
	}
	page = p.save(t, "news")
	if e := p.lastEvent(t, p.jane); e.Purpose != consent.TrackingPurpose || e.Action != consent.ActionWithdrawn || e.Evidence.IP != "127.0.0.1" {
		t.Fatalf("untick: last event %+v", e)
	}
	if _, checked := trackingBox(page); checked || p.allowed(t, p.jane) {
		t.Fatal("still tracked after unticking")
	}
	page = p.save(t, "news", "tracking")
	if e := p.lastEvent(t, p.jane); e.Purpose != consent.TrackingPurpose || e.Action != consent.ActionGranted {
		t.Fatalf("tick again: last event %+v", e)
	}
	if _, checked := trackingBox(page); !checked || !p.allowed(t, p.jane) {
		t.Fatal("not tracked after ticking again")
	}
	if n := p.events(t) - before; n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	p.verify(t)
}

func TestPreferenceCentreTrackingOff(t *testing.T) {
	t.Parallel()
	p := setupPages(t)
	p.setTrackingMode(t, p.ws.ID, consent.TrackingOff)
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if shown, _ := trackingBox(page); status != http.StatusOK || shown || strings.Contains(page, trackingLabel) {
		t.Fatalf("off: %d tracking shown\n%s", status, page)
	}
	if !strings.Contains(page, "Our emails use no open or click tracking") {
		t.Fatalf("off: no sentence saying so\n%s", page)
	}
	before := p.events(t)
	p.save(t, "news", "tracking") // a forged tick is ignored: the choice was not asked
	if p.events(t) != before || p.state(t, p.jane, consent.TrackingPurpose) != "" || p.allowed(t, p.jane) {
		t.Fatal("a tracking choice was recorded while tracking is off")
	}
}

// TestPreferenceCentreTrackingWithoutTopics: in a workspace with no marketing purpose the page
// still offers the tracking choice and a button to save it.
func TestPreferenceCentreTrackingWithoutTopics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	ws := p.ensureWorkspace(t, "bare")
	c := p.contact(t, ws, "solo@example.com")
	tok := p.svc.Keys.Token(consent.Recipient{WorkspaceID: ws, ContactID: c})
	status, page := p.do(t, http.MethodGet, "/u/"+tok, "", nil)
	if shown, _ := trackingBox(page); status != http.StatusOK || !shown || !strings.Contains(page, "There are no topics to choose from.") ||
		!strings.Contains(page, `name="action" value="save"`) {
		t.Fatalf("no topics: %d\n%s", status, page)
	}
	status, page = p.postForm(t, tok, url.Values{"action": {"save"}, "purpose": {"tracking"}})
	if shown, checked := trackingBox(page); status != http.StatusOK || !shown || !checked {
		t.Fatalf("save: %d\n%s", status, page)
	}
	got, err := p.svc.TrackingAllowed(ctx, p.pool, ws, []int64{c})
	if err != nil || !got[0] {
		t.Fatalf("allowed %v %v", got, err)
	}
}

func TestPreferenceCentreTrackingNoticeEscaped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		_, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: p.ws.ID, Name: "tracking",
			Title: `<img src=x onerror=alert(1)>`, Notice: "Line one.\n<script>alert(\"n\")</script>\n\"><a href=javascript:x>"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	status, page := p.do(t, http.MethodGet, "/u/"+p.newsTok, "", nil)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, page)
	}
	for _, bad := range []string{"<script", "<img", "<a href=javascript"} {
		if strings.Contains(page, bad) {
			t.Fatalf("page holds %q:\n%s", bad, page)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;") || !strings.Contains(page, "Line one.") {
		t.Fatalf("notice not shown escaped:\n%s", page)
	}
}

// TestPreferenceCentreTrackingDoesNotResubscribe: allowing tracking is not asking for email, so
// it leaves an earlier "unsubscribe from all" in place.
func TestPreferenceCentreTrackingDoesNotResubscribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := setupPages(t)
	status, _ := p.postForm(t, p.newsTok, url.Values{"action": {"unsubscribe_all"}})
	if status != http.StatusOK {
		t.Fatal(status)
	}
	p.save(t, "tracking")
	if sp, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com"); err != nil || sp.Reason != consent.ReasonUnsubscribedAll {
		t.Fatalf("suppression after ticking only tracking: %+v %v", sp, err)
	}
	if !p.allowed(t, p.jane) {
		t.Fatal("tracking not granted")
	}
	p.save(t, "offers")
	if _, err := p.svc.SuppressionGet(ctx, p.pool, p.ws.ID, "jane@example.com"); err == nil {
		t.Fatal("choosing a topic did not lift the unsubscribe")
	} else if !strings.Contains(err.Error(), db.ErrNotFound.Error()) {
		t.Fatal(err)
	}
	// And the tracking choice the form left unticked is withdrawn with it.
	if p.allowed(t, p.jane) {
		t.Fatal("tracking still on after saving without it")
	}
}

// TestUnsubscribeAllStopsTracking: leaving all marketing (the preference centre's button, or a
// one-click link naming no purpose) also stops tracking, in every mode where the contact was
// tracked; re-subscribing to a topic later does not turn it back on.
func TestUnsubscribeAllStopsTracking(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		mode         string
		grant        bool // the contact granted tracking first
		oneClick     bool // through a one-click link with no purpose, not the page's button
		wantTracking string
	}{
		{"opt-out, no choice", consent.TrackingOptOut, false, false, consent.ActionWithdrawn},
		{"opt-out, no choice, one-click", consent.TrackingOptOut, false, true, consent.ActionWithdrawn},
		{"opt-out, granted", consent.TrackingOptOut, true, false, consent.ActionWithdrawn},
		{"opt-in, granted", consent.TrackingOptIn, true, false, consent.ActionWithdrawn},
		{"opt-in, granted, one-click", consent.TrackingOptIn, true, true, consent.ActionWithdrawn},
		{"opt-in, no choice", consent.TrackingOptIn, false, false, ""},
		{"off, granted", consent.TrackingOff, true, false, consent.ActionWithdrawn},
		{"off, no choice", consent.TrackingOff, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := setupPages(t)
			p.setTrackingMode(t, p.ws.ID, tc.mode)
			if tc.grant {
				p.trackingPurpose(t, p.ws.ID)
				p.grant(t, p.jane, consent.TrackingPurpose)
			}
			var status int
			if tc.oneClick {
				status, _ = p.oneClick(t, p.svc.Keys.Token(consent.Recipient{WorkspaceID: p.ws.ID, ContactID: p.jane}))
			} else {
				status, _ = p.postForm(t, p.newsTok, url.Values{"action": {"unsubscribe_all"}})
			}
			if status != http.StatusOK {
				t.Fatal(status)
			}
			if st := p.state(t, p.jane, consent.TrackingPurpose); st != tc.wantTracking {
				t.Fatalf("tracking state %q, want %q", st, tc.wantTracking)
			}
			if p.allowed(t, p.jane) {
				t.Fatal("still tracked after unsubscribing from all")
			}
			if tc.wantTracking != "" {
				h, err := p.svc.History(context.Background(), p.pool, p.ws.ID, p.jane)
				if err != nil {
					t.Fatal(err)
				}
				var e consent.Event
				for _, ev := range h {
					if ev.Purpose == consent.TrackingPurpose {
						e = ev
					}
				}
				wantSource := consent.SourcePreferenceCentre
				if tc.oneClick {
					wantSource = consent.SourceOneClick
				}
				if e.Action != consent.ActionWithdrawn || e.Actor != consent.ActorRecipient || e.Source != wantSource ||
					e.Evidence == nil || e.Evidence.IP != "127.0.0.1" {
					t.Fatalf("tracking withdrawal %+v", e)
				}
			}
			// Choosing a topic again brings the email back, not the tracking.
			p.save(t, "news")
			if tc.mode != consent.TrackingOff && p.allowed(t, p.jane) {
				t.Fatal("re-subscribing turned tracking back on")
			}
			p.verify(t)
		})
	}
}
