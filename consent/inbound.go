package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/httpx"
	"herald/internal/inboundsmtp"
)

// Inbound receives mailto unsubscribes (List-Unsubscribe's mailto:unsubscribe+TOKEN@Domain) as a
// route of the inbound SMTP server (internal/inboundsmtp). It accepts mail only for such
// addresses with a validly signed token; the message itself is discarded, and its end performs
// the unsubscribe.
type Inbound struct {
	DB      *pgxpool.Pool
	Service *Service
	// Domain is the domain of the unsubscribe addresses.
	Domain string
	Logger *slog.Logger
	// MaxMessageBytes caps a message (default 256 KiB: an unsubscribe mail is a few hundred bytes).
	MaxMessageBytes int64
}

const (
	inboundMaxBytes  = int64(256 << 10) // default MaxMessageBytes
	inboundLocalPart = "unsubscribe+"   // local part prefix of an unsubscribe address
)

// Route returns the inbound server's route for the unsubscribe addresses.
func (in *Inbound) Route() (inboundsmtp.Route, error) {
	if in.Domain == "" || in.DB == nil || in.Service == nil || in.Service.Keys == nil {
		return inboundsmtp.Route{}, errors.New("mailto unsubscribe route: Domain, DB and Service (with Keys) are required")
	}
	maxBytes := in.MaxMessageBytes
	if maxBytes <= 0 {
		maxBytes = inboundMaxBytes
	}
	return inboundsmtp.NewRoute("mailto unsubscribe", maxBytes, in.recipient, in.unsubscribe), nil
}

func (in *Inbound) logger() *slog.Logger { return httpx.LoggerOrDiscard(in.Logger) }

// recipient parses an unsubscribe address; ok is false for anything else.
func (in *Inbound) recipient(addr string) (Recipient, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], in.Domain) {
		return Recipient{}, false
	}
	local := addr[:at]
	if len(local) <= len(inboundLocalPart) || !strings.EqualFold(local[:len(inboundLocalPart)], inboundLocalPart) {
		return Recipient{}, false
	}
	r, err := in.Service.Keys.ParseToken(local[len(inboundLocalPart):])
	return r, err == nil
}

// unsubscribe ignores the message and unsubscribes each recipient, each in its own transaction.
// A token naming a contact since erased is answered 250 (there is nothing left to do), one naming
// a purpose that does not exist 550, and a database failure 451, so the sender retries.
func (in *Inbound) unsubscribe(ctx context.Context, _ []byte, rcpts []Recipient) error {
	for _, rcpt := range rcpts {
		var changed bool
		err := pgx.BeginFunc(ctx, in.DB, func(tx pgx.Tx) error {
			var err error
			changed, err = in.Service.Unsubscribe(ctx, tx, rcpt, ChannelMailto, Evidence{})
			return err
		})
		log := in.logger().With("workspace_id", rcpt.WorkspaceID, "contact_id", rcpt.ContactID, "purpose_id", rcpt.PurposeID)
		switch {
		case errors.Is(err, ErrContactGone):
			log.Info("mailto unsubscribe: contact gone")
		case errors.Is(err, ErrBadToken):
			log.Warn("mailto unsubscribe: token names nothing", "err", err)
			return inboundsmtp.NoSuchAddress()
		case err != nil:
			return fmt.Errorf("mailto unsubscribe of contact %d (workspace %d, purpose %d): %w",
				rcpt.ContactID, rcpt.WorkspaceID, rcpt.PurposeID, err) // answered 451 and logged
		default:
			log.Info("mailto unsubscribe", "changed", changed)
		}
	}
	return nil
}
