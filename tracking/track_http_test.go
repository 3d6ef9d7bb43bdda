package tracking

import (
	"bytes"
	"image/gif"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/consent"
)

func TestPixelAlwaysServed(t *testing.T) {
	t.Parallel()
	b := trkSetup(t, trkOpts{})
	campaign := b.campaign(t, b.wsA)
	rcpt, contact := b.recipient(t, b.wsA, campaign, true)
	valid := OpenToken(b.svc.Keys, OpenRef{WorkspaceID: b.wsA, CampaignID: campaign, RecipientID: rcpt})
	other, err := consent.NewKeys("another-hash-key-0123456789", "7:another-token-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		record      bool
	}{
		{"valid", valid, true},
		{"upper case (the same token)", strings.ToUpper(valid), true},
		{"truncated", valid[:len(valid)-3], false},
		{"forged MAC", valid[:len(valid)-2] + flip(valid[len(valid)-2:]), false},
		{"other key ring", OpenToken(other, OpenRef{WorkspaceID: b.wsA, CampaignID: campaign, RecipientID: rcpt}), false},
		{"unsubscribe token", b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.wsA, ContactID: contact, PurposeID: 1}), false},
		{"click token", ClickToken(b.svc.Keys, ClickRef{WorkspaceID: b.wsA, CampaignID: campaign, RecipientID: rcpt, LinkID: 1}), false},
		{"garbage", "%3Cscript%3E", false},
		{"long", strings.Repeat("a", 5000), false},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp := b.get(t, method, "/t/o/"+tc.token, map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"})
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || resp.Header.Get("Content-Length") != "43" {
				t.Errorf("%s %s: %d %v", tc.name, method, resp.StatusCode, resp.Header)
			}
			if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") || resp.Header.Get("Referrer-Policy") != "no-referrer" ||
				!strings.Contains(resp.Header.Get("X-Robots-Tag"), "noindex") {
				t.Errorf("%s %s: headers %v", tc.name, method, resp.Header)
			}
			if method == http.MethodHead {
				if len(body) != 0 {
					t.Errorf("%s HEAD: body of %d bytes", tc.name, len(body))
				}
				continue
			}
			img, err := gif.Decode(bytes.NewReader(body))
			if err != nil || img.Bounds().Dx() != 1 || img.Bounds().Dy() != 1 || len(body) != 43 {
				t.Errorf("%s: not a 1x1 GIF of 43 bytes (%d bytes): %v", tc.name, len(body), err)
			}
		}
	}
	b.writer.Close()
	evs := b.events(t)
	// The valid token twice (GET and HEAD, as written and upper-cased): four opens, the HEADs flagged.
	if len(evs) != 4 {
		t.Fatalf("%d opens stored, want 4: %+v", len(evs), evs)
	}
	heads := 0
	for _, e := range evs {
		if e.Kind != KindOpen || e.RecipientID != rcpt || e.CampaignID != campaign || e.WorkspaceID != b.wsA || e.LinkID != nil {
			t.Errorf("stored %+v", e)
		}
		if e.Machine {
			heads++
			if e.Reason != ReasonHEAD {
				t.Errorf("machine reason %q", e.Reason)
			}
		}
		if e.IP != "127.0.0.0/24" || !strings.HasPrefix(e.UserAgent, "Mozilla/5.0 (X11") {
			t.Errorf("ip %q, user agent %q", e.IP, e.UserAgent)
		}
	}
	if heads != 2 {
		t.Errorf("%d HEAD opens flagged, want 2", heads)
	}
}

// flip changes a token's characters into other valid base32 characters.
func flip(s string) string {
	return strings.Map(func(r rune) rune {
		if r == 'a' {
			return 'b'
		}
		return 'a'
	}, s)
}

func TestClickRedirect(t *testing.T) {
	t.Parallel()
	b := trkSetup(t, trkOpts{})
	campA := b.campaign(t, b.wsA)
	campA2 := b.campaign(t, b.wsA)
	campB := b.campaign(t, b.wsB)
	rcpt, contact := b.recipient(t, b.wsA, campA, true)
	rcptB, _ := b.recipient(t, b.wsB, campB, false)
	const target = "https://shop.example/offer?a=1&b=%3Cx%3E"
	out, err := b.tracker.Instrument(b.ctx, b.wsA, campA, rcpt, `<a href="https://shop.example/offer?a=1&amp;b=%3Cx%3E">x</a>`)
	if err != nil {
		t.Fatal(err)
	}
	m := clickURLRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no click URL in %s", out)
	}
	valid := m[1]
	ref, _ := ParseClickToken(b.svc.Keys, valid)
	ids, err := b.links.IDs(b.ctx, b.wsA, campA2, []string{"https://other.example/"})
	if err != nil {
		t.Fatal(err)
	}
	otherLink := ids[0]
	idsB, err := b.links.IDs(b.ctx, b.wsB, campB, []string{"https://globex.example/"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(r ClickRef) string { return ClickToken(b.svc.Keys, r) }
	// A fresh handler (empty caches): the lookups go to the database too.
	cold := NewLinks(b.pool, 0, 0)

	tests := []struct {
		name, path string
		want       int
	}{
		{"valid", "/t/c/" + valid, http.StatusFound},
		{"valid with ?url=", "/t/c/" + valid + "?url=https://evil.example/&u=https://evil.example/", http.StatusFound},
		{"truncated", "/t/c/" + valid[:len(valid)-4], http.StatusNotFound},
		{"forged", "/t/c/" + valid[:len(valid)-2] + flip(valid[len(valid)-2:]), http.StatusNotFound},
		{"unsubscribe token", "/t/c/" + b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.wsA, ContactID: contact, PurposeID: 1}), http.StatusNotFound},
		{"open token", "/t/c/" + OpenToken(b.svc.Keys, OpenRef{WorkspaceID: b.wsA, CampaignID: campA, RecipientID: rcpt}), http.StatusNotFound},
		{"view token", "/t/c/" + b.svc.Keys.SignIDs("herald/view/v1", b.wsA, campA, rcpt), http.StatusNotFound},
		{"link of another campaign", "/t/c/" + sign(ClickRef{WorkspaceID: b.wsA, CampaignID: campA, RecipientID: rcpt, LinkID: otherLink}), http.StatusNotFound},
		{"cross-workspace: B's token for A's link", "/t/c/" + sign(ClickRef{WorkspaceID: b.wsB, CampaignID: campA, RecipientID: rcptB, LinkID: ref.LinkID}), http.StatusNotFound},
		{"cross-workspace: A's token for B's link", "/t/c/" + sign(ClickRef{WorkspaceID: b.wsA, CampaignID: campB, RecipientID: rcpt, LinkID: idsB[0]}), http.StatusNotFound},
		{"unknown link", "/t/c/" + sign(ClickRef{WorkspaceID: b.wsA, CampaignID: campA, RecipientID: rcpt, LinkID: 1 << 40}), http.StatusNotFound},
		{"CRLF in the path", "/t/c/" + valid + "%0d%0aLocation:%20evil.example", http.StatusNotFound},
		{"no token", "/t/c/", http.StatusNotFound},
	}
	for _, links := range []*Links{b.links, cold} {
		b.handler.Links = links
		for _, tc := range tests {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp := b.get(t, method, tc.path, map[string]string{"User-Agent": "Mozilla/5.0 (Macintosh) Safari/605"})
				body, _ := io.ReadAll(resp.Body)
				if tc.name == "no token" {
					// Not one of the handler's routes: the router's own 404.
					if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
						t.Errorf("%s: %d", tc.name, resp.StatusCode)
					}
					continue
				}
				if resp.StatusCode != tc.want {
					t.Errorf("%s %s: %d, want %d", tc.name, method, resp.StatusCode, tc.want)
					continue
				}
				if resp.Header.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(resp.Header.Get("X-Robots-Tag"), "noindex") {
					t.Errorf("%s: headers %v", tc.name, resp.Header)
				}
				if tc.want == http.StatusFound {
					if loc := resp.Header.Get("Location"); loc != target {
						t.Errorf("%s: Location %q, want %q", tc.name, loc, target)
					}
					continue
				}
				if resp.Header.Get("Location") != "" {
					t.Errorf("%s: a refused click redirects to %q", tc.name, resp.Header.Get("Location"))
				}
				if method == http.MethodGet && (!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
					strings.Contains(strings.ToLower(string(body)), "<script") || len(body) > 1024) {
					t.Errorf("%s: 404 page %q %q", tc.name, resp.Header.Get("Content-Type"), body)
				}
			}
		}
	}
	b.writer.Close()
	evs := b.events(t)
	// Two valid paths, GET and HEAD, through two caches: 8 clicks; all of the recipient's link.
	if len(evs) != 8 {
		t.Fatalf("%d clicks stored, want 8: %+v", len(evs), evs)
	}
	for _, e := range evs {
		if e.Kind != KindClick || e.LinkID == nil || *e.LinkID != ref.LinkID || e.RecipientID != rcpt || e.CampaignID != campA {
			t.Errorf("stored %+v", e)
		}
	}
}

func TestShutdownFlushesEveryEvent(t *testing.T) {
	t.Parallel()
	// A flush interval far beyond the test: only Close can write the events.
	b := trkSetup(t, trkOpts{writer: func(w *EventWriter) { w.FlushInterval = time.Hour; w.BatchSize = 100000 }})
	campaign := b.campaign(t, b.wsB) // opt-out workspace: everyone is tracked
	var tokens []string
	for range 20 {
		rcpt, _ := b.recipient(t, b.wsB, campaign, false)
		tokens = append(tokens, OpenToken(b.svc.Keys, OpenRef{WorkspaceID: b.wsB, CampaignID: campaign, RecipientID: rcpt}))
	}
	const perClient, clients = 50, 8
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				resp, err := http.Get(b.srv.URL + "/t/o/" + tokens[(c*perClient+i)%len(tokens)])
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := len(b.events(t)); n != 0 {
		t.Fatalf("%d events written before shutdown; the test needs them buffered", n)
	}
	// Shutdown as cmd/herald does it: the HTTP server stops, then the writer closes.
	b.srv.Close()
	b.writer.Close()
	if n := len(b.events(t)); n != perClient*clients {
		t.Fatalf("%d events stored after shutdown, want %d", n, perClient*clients)
	}
	if err := b.writer.Add(b.ctx, Event{Kind: KindOpen}); err != ErrWriterClosed {
		t.Errorf("Add after Close: %v", err)
	}
	if d := counter(b.metrics.Dropped.WithLabelValues("buffer_full")); d != 0 {
		t.Errorf("%v events dropped", d)
	}
	// Go's own user agent is a plain HTTP client's: flagged machine.
	if n := counter(b.metrics.Events.WithLabelValues(KindOpen, "true")); n != perClient*clients {
		t.Errorf("herald_tracking_events_total{open,true} = %v", n)
	}
}
