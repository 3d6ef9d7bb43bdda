package tracking

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/inboundsmtp"
)

// startReceiver serves a BounceReceiver's route, and the more routes given after it, on a
// loopback port and returns the address.
func (b *fbBundle) startReceiver(tb testing.TB, more ...inboundsmtp.Route) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	route, err := (&BounceReceiver{VERP: b.verp, Feedback: b.fb, MaxMessageBytes: 64 << 10}).Route()
	if err != nil {
		tb.Fatal(err)
	}
	srv := &inboundsmtp.Server{Domain: b.verp.Domain, Routes: append([]inboundsmtp.Route{route}, more...)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Error(err)
		}
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return ln.Addr().String()
}

// deliver sends msg from the null sender to rcpt over SMTP; it returns the error of RCPT or of
// the end of DATA.
func deliver(tb testing.TB, addr, rcpt, msg string) error {
	tb.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("mx.example.net"); err != nil {
		tb.Fatal(err)
	}
	if err := c.Mail("", nil); err != nil {
		tb.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestBounceReceiverOverSMTP(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	addr := b.startReceiver(t)
	ws, other := b.workspace(t), b.workspace(t)

	// A DSN for a campaign recipient: hard bounce, the row's address suppressed.
	cid, email := b.contact(t, ws, "news")
	campaign, rcpt := b.campaignRecipient(t, ws, cid, email)
	dsn := sample(t, "dsn_hard.eml", "someone-else@example.org", campaigns.MessageID(b.svc.Keys, campaign, rcpt, "mid.example"))
	if err := deliver(t, addr, b.verp.RecipientAddress(ws, rcpt), dsn); err != nil {
		t.Fatal(err)
	}
	if got := b.suppression(t, ws, email); got != consent.ReasonHardBounce {
		t.Fatalf("suppression %q after a DSN, want hard_bounce", got)
	}
	if got := b.suppression(t, ws, "someone-else@example.org"); got != "" {
		t.Fatal("the address in the report was trusted over the database row")
	}
	// The same report delivered again (same report Message-ID) counts once.
	if err := deliver(t, addr, strings.ToUpper(b.verp.RecipientAddress(ws, rcpt)), dsn); err != nil {
		t.Fatal(err)
	}
	if n := b.feedbackRows(t, ws, KindHardBounce); n != 1 {
		t.Fatalf("%d hard bounce rows after a repeated DSN, want 1", n)
	}

	// An ARF complaint about a transactional message: withdrawals and suppression.
	cid2, email2 := b.contact(t, ws, "news", "offers")
	_, seq, mid := b.message(t, ws, cid2, email2)
	if err := deliver(t, addr, b.verp.MessageAddress(ws, seq), sample(t, "arf_abuse.eml", email2, mid)); err != nil {
		t.Fatal(err)
	}
	if got := b.suppression(t, ws, email2); got != consent.ReasonComplaint {
		t.Fatalf("suppression %q after ARF, want complaint", got)
	}
	if n, err := consent.Verify(b.ctx, b.pool, ws); err != nil || n == 0 {
		t.Fatalf("verify after complaint: %d, %v", n, err)
	}

	// A plain bounce without a DSN and without a code: soft.
	cid3, email3 := b.contact(t, ws)
	_, seq3, _ := b.message(t, ws, cid3, email3)
	if err := deliver(t, addr, b.verp.MessageAddress(ws, seq3), "Subject: failure\r\n\r\nCould not deliver.\r\n"); err != nil {
		t.Fatal(err)
	}
	if n := b.feedbackRows(t, ws, KindSoftBounce); n != 1 || b.suppression(t, ws, email3) != "" {
		t.Fatalf("plain bounce: %d soft rows, suppression %q", n, b.suppression(t, ws, email3))
	}

	// Refused at RCPT: other addresses, forged, truncated and foreign tokens.
	good := b.verp.MessageAddress(ws, seq3)
	local := good[:strings.IndexByte(good, '@')]
	foreign := VERP{Keys: mustKeys(t), Domain: b.verp.Domain}
	for name, to := range map[string]string{
		"postmaster":   "postmaster@" + b.verp.Domain,
		"unsubscribe":  "unsubscribe+" + local[len("bounces+"):] + "@" + b.verp.Domain,
		"other domain": local + "@elsewhere.example",
		"truncated":    local[:len(local)-3] + "@" + b.verp.Domain,
		"flipped":      local[:len(local)-1] + fbFlip(local[len(local)-1]) + "@" + b.verp.Domain,
		"foreign key":  foreign.MessageAddress(ws, seq3),
		"bare prefix":  "bounces+@" + b.verp.Domain,
	} {
		err := deliver(t, addr, to, "Subject: x\r\n\r\nx\r\n")
		if code := smtpCode(err); code != 550 {
			t.Errorf("%s: RCPT answered %v, want 550", name, err)
		}
	}
	// A valid token of another workspace's row names nothing there: accepted, nothing done.
	if err := deliver(t, addr, b.verp.RecipientAddress(other, rcpt), dsn); err != nil {
		t.Fatal(err)
	}
	if n := b.feedbackRows(t, other, KindHardBounce); n != 0 {
		t.Fatal("a token of another workspace acted on its row")
	}
	// Oversized reports are refused.
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 70<<10) + "\r\n"
	// go-smtp answers 552 and closes the connection; the client may see either.
	if err := deliver(t, addr, good, big); err == nil {
		t.Fatal("oversized report accepted")
	}
	if n := b.feedbackRows(t, ws, KindSoftBounce); n != 1 {
		t.Fatalf("%d soft rows after an oversized report, want 1", n)
	}
}

// TestBounceAndUnsubscribeRoutes serves the bounce and the mailto unsubscribe routes on one
// listener and one domain, as cmd/herald does: each takes its own addresses, and a message to
// both kinds is handled by both.
func TestBounceAndUnsubscribeRoutes(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	unsub, err := (&consent.Inbound{DB: b.pool, Service: b.svc, Domain: b.verp.Domain}).Route()
	if err != nil {
		t.Fatal(err)
	}
	addr := b.startReceiver(t, unsub)
	ws := b.workspace(t)
	bounced, bouncedEmail := b.contact(t, ws, "news")
	campaign, rcpt := b.campaignRecipient(t, ws, bounced, bouncedEmail)
	dsn := sample(t, "dsn_hard.eml", bouncedEmail, campaigns.MessageID(b.svc.Keys, campaign, rcpt, "mid.example"))
	leaving, _ := b.contact(t, ws, "news")
	var news int64
	if err := b.pool.QueryRow(b.ctx, `SELECT id FROM purposes WHERE workspace_id = $1 AND name = 'news'`, ws).Scan(&news); err != nil {
		t.Fatal(err)
	}
	unsubAddr := consent.UnsubscribeAddress(b.verp.Domain, b.svc.Keys.Token(consent.Recipient{WorkspaceID: ws, ContactID: leaving, PurposeID: news}))

	// One message, one recipient of each kind: the DSN suppresses the bounced address and the
	// mailto withdraws the other contact's consent.
	if err := deliverTo(t, addr, []string{b.verp.RecipientAddress(ws, rcpt), unsubAddr}, dsn); err != nil {
		t.Fatal(err)
	}
	if got := b.suppression(t, ws, bouncedEmail); got != consent.ReasonHardBounce {
		t.Fatalf("suppression %q, want hard_bounce", got)
	}
	var action, source string
	if err := b.pool.QueryRow(b.ctx, `SELECT action, source FROM consent_events WHERE workspace_id = $1 AND contact_id = $2
		AND purpose = 'news' ORDER BY seq DESC LIMIT 1`, ws, leaving).Scan(&action, &source); err != nil {
		t.Fatal(err)
	}
	if action != consent.ActionWithdrawn || source != consent.SourceOneClick {
		t.Fatalf("last news event of the unsubscriber: %s (%s)", action, source)
	}
	// Neither route takes the other's local part under its own prefix, nor a third.
	for _, to := range []string{"postmaster@" + b.verp.Domain, "bounces+" + unsubAddr[len("unsubscribe+"):]} {
		if code := smtpCode(deliver(t, addr, to, "Subject: x\r\n\r\nx\r\n")); code != 550 {
			t.Errorf("%s: answered %d, want 550", to, code)
		}
	}
}

// deliverTo sends msg from the null sender to every address in rcpts in one transaction; it
// returns the first refusal.
func deliverTo(tb testing.TB, addr string, rcpts []string, msg string) error {
	tb.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		tb.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func mustKeys(tb testing.TB) *consent.Keys {
	tb.Helper()
	k, err := consent.NewKeys("some-other-hash-key-123456", "1:some-other-token-key-123456")
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func fbFlip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}
