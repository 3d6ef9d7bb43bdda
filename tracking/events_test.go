package tracking

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
)

func TestStoredIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in         string
		full, want string
		cut        string
	}{
		{in: "203.0.113.77", full: "203.0.113.77", cut: "203.0.113.0/24"},
		{in: "::ffff:203.0.113.77", full: "203.0.113.77", cut: "203.0.113.0/24"},
		{in: "2001:db8:abcd:12::1", full: "2001:db8:abcd:12::1", cut: "2001:db8:abcd::/48"},
		{in: "fe80::1%eth0", full: "fe80::1", cut: "fe80::/48"},
		{in: "", full: "", cut: ""},
	} {
		var a netip.Addr
		if tc.in != "" {
			a = netip.MustParseAddr(tc.in)
		}
		if got := storedIP(a, true); got != tc.full {
			t.Errorf("%s full: %q, want %q", tc.in, got, tc.full)
		}
		if got := storedIP(a, false); got != tc.cut {
			t.Errorf("%s truncated: %q, want %q", tc.in, got, tc.cut)
		}
	}
}

func TestCleanUserAgent(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Mozilla/5.0":                  "Mozilla/5.0",
		"a\x00b\r\nc\x7fd":             "abcd",
		"caf\xe9 \xff ok":              "caf  ok",
		"Zoë ✓":                        "Zoë ✓",
		strings.Repeat("é", 400):       strings.Repeat("é", 256),
		strings.Repeat("x", 600) + "y": strings.Repeat("x", 512),
	} {
		if got := cleanUserAgent(in); got != want {
			t.Errorf("cleanUserAgent(%.20q) = %.20q (%d bytes), want %.20q (%d bytes)", in, got, len(got), want, len(want))
		}
	}
}

func TestClassifyRequest(t *testing.T) {
	t.Parallel()
	browser := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36"
	home := netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		name, kind, ua string
		head           bool
		ip             netip.Addr
		want           string
	}{
		{"browser open", KindOpen, browser, false, home, ""},
		{"browser click", KindClick, browser, false, home, ""},
		{"Gmail proxy", KindOpen, "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", false, home, ReasonProxy},
		{"Yahoo proxy", KindOpen, "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", false, home, ReasonProxy},
		{"Apple MPP agent", KindOpen, "Mozilla/5.0", false, home, ReasonAppleMPP},
		{"Apple network", KindOpen, browser, false, netip.MustParseAddr("17.58.1.2"), ReasonAppleMPP},
		{"Apple network, v4-mapped", KindOpen, browser, false, netip.MustParseAddr("::ffff:17.58.1.2"), ReasonAppleMPP},
		{"Apple network click is a person", KindClick, browser, false, netip.MustParseAddr("17.58.1.2"), ""},
		{"HEAD", KindClick, browser, true, home, ReasonHEAD},
		{"no agent", KindClick, "  ", false, home, ReasonNoAgent},
		{"Barracuda", KindClick, "Mozilla/5.0 Barracuda Sentinel (EE)", false, home, ReasonScanner},
		{"Mimecast", KindClick, "Mimecast URL Protect", false, home, ReasonScanner},
		{"Proofpoint", KindClick, "Mozilla/5.0 (compatible; Proofpoint URL Defense)", false, home, ReasonScanner},
		{"Office link check", KindClick, "Microsoft Office Existence Discovery", false, home, ReasonScanner},
		{"crawler", KindOpen, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", false, home, ReasonScanner},
		{"curl", KindClick, "curl/8.5.0", false, home, ReasonScanner},
		{"Go client", KindOpen, "Go-http-client/1.1", false, home, ReasonScanner},
	} {
		if got := classifyRequest(tc.kind, tc.head, tc.ua, tc.ip); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestEventChecks writes events through the writer and checks what is stored: only recipients who
// allow tracking now, IPs truncated unless the workspace keeps them, machine flags.
func TestEventChecks(t *testing.T) {
	t.Parallel()
	b := trkSetup(t, trkOpts{})
	campA := b.campaign(t, b.wsA) // opt-in
	campB := b.campaign(t, b.wsB) // opt-out, full IPs
	b.setMode(t, b.wsB, consent.TrackingOptOut, true)
	granted, _ := b.recipient(t, b.wsA, campA, true)
	neverAsked, _ := b.recipient(t, b.wsA, campA, false)
	turnedOff, offContact := b.recipient(t, b.wsA, campA, true)
	b.track(t, b.wsA, offContact, consent.ActionWithdrawn) // after the send, before the event
	optOut, _ := b.recipient(t, b.wsB, campB, false)
	withdrewB, withdrewContact := b.recipient(t, b.wsB, campB, false)
	b.track(t, b.wsB, withdrewContact, consent.ActionWithdrawn)
	early, _ := b.recipient(t, b.wsB, campB, false)
	if _, err := b.pool.Exec(b.ctx, `UPDATE campaign_recipients SET sent_at = $2 WHERE id = $1`, early, b.now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	links, err := b.links.IDs(b.ctx, b.wsB, campB, []string{"https://b.example/1", "https://b.example/2", "https://b.example/3"})
	if err != nil {
		t.Fatal(err)
	}

	v4, v6 := netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("2001:db8:abcd:12::1")
	browser := "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
	at := b.now
	ev := func(kind string, ws, camp, rcpt, link int64, ip netip.Addr, offset time.Duration) Event {
		return Event{Kind: kind, WorkspaceID: ws, CampaignID: camp, RecipientID: rcpt, LinkID: link, At: at.Add(offset), IP: ip, UserAgent: browser}
	}
	for _, e := range []Event{
		ev(KindOpen, b.wsA, campA, granted, 0, v4, 0),
		ev(KindOpen, b.wsA, campA, granted, 0, v6, time.Millisecond),
		ev(KindOpen, b.wsA, campA, neverAsked, 0, v4, 0),         // opt-in, never granted: not stored
		ev(KindOpen, b.wsA, campA, turnedOff, 0, v4, 0),          // withdrew since the send: not stored
		ev(KindOpen, b.wsB, campB, optOut, 0, v4, 0),             // opt-out: stored, full IP
		ev(KindOpen, b.wsB, campB, optOut, 0, v6, 0),             // full IPv6
		ev(KindOpen, b.wsB, campB, withdrewB, 0, v4, 0),          // opted out: not stored
		ev(KindOpen, b.wsA, campB, optOut, 0, v4, 0),             // wrong workspace for the campaign: not stored
		ev(KindOpen, b.wsB, campA, optOut, 0, v4, 0),             // recipient of another campaign: not stored
		ev(KindOpen, b.wsB, campB, early, 0, v4, 0),              // a second after the send: machine
		ev(KindClick, b.wsB, campB, optOut, links[0], v4, 0),     // one link, then another 5 s later: people
		ev(KindClick, b.wsB, campB, optOut, links[1], v4, 5e9),   //
		ev(KindClick, b.wsB, campB, early, links[0], v4, 10e9),   // three links within a second: a burst, all flagged
		ev(KindClick, b.wsB, campB, early, links[1], v4, 10.3e9), //
		ev(KindClick, b.wsB, campB, early, links[2], v4, 10.6e9), //
		ev(KindClick, b.wsB, campB, early, links[2], v4, 20e9),   // 10 s later: on its own again
	} {
		if err := b.writer.Add(b.ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	b.writer.Close()
	want := map[string]int{
		"open ws=A r=granted ip=203.0.113.0/24 human":            1,
		"open ws=A r=granted ip=2001:db8:abcd::/48 human":        1,
		"open ws=B r=optOut ip=203.0.113.77 human":               1,
		"open ws=B r=optOut ip=2001:db8:abcd:12::1 human":        1,
		"open ws=B r=early ip=203.0.113.77 machine:early":        1,
		"click ws=B r=optOut ip=203.0.113.77 human":              2,
		"click ws=B r=early ip=203.0.113.77 machine:click_burst": 3,
		"click ws=B r=early ip=203.0.113.77 human":               1,
	}
	names := map[int64]string{granted: "granted", optOut: "optOut", early: "early", neverAsked: "neverAsked", turnedOff: "turnedOff", withdrewB: "withdrewB"}
	wsNames := map[int64]string{b.wsA: "A", b.wsB: "B"}
	name := func(e storedEvent) string {
		s := e.Kind + " ws=" + wsNames[e.WorkspaceID] + " r=" + names[e.RecipientID] + " ip=" + e.IP
		if e.Machine {
			return s + " machine:" + e.Reason
		}
		return s + " human"
	}
	got := map[string]int{}
	for _, e := range b.events(t) {
		got[name(e)]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d stored, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("unexpected: %d x %s", n, k)
		}
	}
	if n := counter(b.metrics.Discarded.WithLabelValues("not_allowed")); n != 3 {
		t.Errorf("discarded not_allowed = %v, want 3", n)
	}
	if n := counter(b.metrics.Discarded.WithLabelValues("unknown_recipient")); n != 2 {
		t.Errorf("discarded unknown_recipient = %v, want 2", n)
	}
	if n := counter(b.metrics.Events.WithLabelValues(KindClick, "true")); n != 3 {
		t.Errorf("machine clicks counted %v, want 3", n)
	}
}

// TestBackpressure fills the buffer while the writer is stuck on a locked table: the handler's
// Add waits for room, then gives up and the event is counted as dropped; the rest is written.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	b := trkSetup(t, trkOpts{writer: func(w *EventWriter) {
		w.BufferSize, w.BatchSize, w.EnqueueWait = 2, 1, 300*time.Millisecond
	}})
	campaign := b.campaign(t, b.wsB)
	rcpt, _ := b.recipient(t, b.wsB, campaign, false)
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(b.ctx, `LOCK TABLE campaign_recipients IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	e := Event{Kind: KindOpen, WorkspaceID: b.wsB, CampaignID: campaign, RecipientID: rcpt, At: b.now, UserAgent: "Mozilla/5.0 (X11)"}
	// The first is taken by the writer, which then waits for the lock; two fill the buffer.
	for i := range 3 {
		if err := b.writer.Add(b.ctx, e); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	start := time.Now()
	if err := b.writer.Add(b.ctx, e); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("add to a full buffer: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("gave up after %v, before its wait", d)
	}
	if n := counter(b.metrics.Dropped.WithLabelValues("buffer_full")); n != 1 {
		t.Errorf("dropped %v, want 1", n)
	}
	if err := tx.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	b.writer.Close()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM tracking_events`).Scan(&n); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
}
