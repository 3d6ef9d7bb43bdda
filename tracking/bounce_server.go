package tracking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/emersion/go-smtp"

	"herald/internal/httpx"
	"herald/internal/inboundsmtp"
)

// BounceReceiver receives DSN and ARF reports for the bounce addresses (bounces+TOKEN@domain, see
// VERP) as a route of the inbound SMTP server (internal/inboundsmtp). It accepts mail only for
// such addresses with a validly signed token, parses the report (ParseReport), and hands it to
// Feedback.Process for the message the token names.
type BounceReceiver struct {
	VERP     VERP
	Feedback *Feedback
	Logger   *slog.Logger
	// MaxMessageBytes caps a report (default 1 MiB: a DSN quoting the whole returned message).
	MaxMessageBytes int64
}

const bounceMaxBytes = int64(1 << 20) // default MaxMessageBytes

// Route returns the inbound server's route for the bounce addresses.
func (b *BounceReceiver) Route() (inboundsmtp.Route, error) {
	if b.VERP.Domain == "" || b.VERP.Keys == nil || b.Feedback == nil {
		return inboundsmtp.Route{}, errors.New("bounce route: VERP (domain and keys) and Feedback are required")
	}
	maxBytes := b.MaxMessageBytes
	if maxBytes <= 0 {
		maxBytes = bounceMaxBytes
	}
	return inboundsmtp.NewRoute("bounce", maxBytes, b.VERP.Parse, b.process), nil
}

func (b *BounceReceiver) logger() *slog.Logger { return httpx.LoggerOrDiscard(b.Logger) }

// process reads the report and processes it for each recipient. A report that names a message
// since deleted, or that is no bounce (a successful DSN), is answered 250 and dropped; a message
// that is not mail at all 554; a database failure 451, so the sender retries.
func (b *BounceReceiver) process(ctx context.Context, msg []byte, targets []BounceTarget) error {
	rep, err := ParseReport(bytes.NewReader(msg))
	if err != nil && rep.Kind == "" {
		b.logger().Warn("bounce receiver: unreadable report", "err", err)
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed report"}
	}
	if rep.Kind == "" {
		b.logger().Info("bounce receiver: report is no bounce or complaint", "source", rep.Source, "detail", rep.Detail)
		return nil
	}
	for _, t := range targets {
		_, err := b.Feedback.Process(ctx, Report{WorkspaceID: t.WorkspaceID, Kind: rep.Kind, Source: rep.Source,
			Target: &t, Status: rep.Status, Detail: rep.Detail, ProviderEventID: reportEventID(rep.ReportID, t)})
		switch {
		case errors.Is(err, ErrUnmatched):
			b.logger().Info("bounce receiver: the message is gone", "workspace_id", t.WorkspaceID, "verp_kind", t.Kind, "id", t.ID)
		case err != nil:
			return fmt.Errorf("bounce report for workspace %d, kind %d, id %d: %w", t.WorkspaceID, t.Kind, t.ID, err) // answered 451 and logged
		}
	}
	return nil
}

// reportEventID identifies a report by its own Message-ID and the send it is about, so that a
// report delivered again (after a 451, or twice by the sender) counts once. No id without a
// Message-ID.
func reportEventID(reportID string, t BounceTarget) string {
	if reportID == "" {
		return ""
	}
	h := sha256.Sum256([]byte(reportID))
	return hex.EncodeToString(h[:16]) + "/" + strconv.Itoa(t.Kind) + "/" + strconv.FormatInt(t.ID, 10)
}
