package consent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/httpx"
)

// Inbound is the SMTP receiver of mailto unsubscribes (List-Unsubscribe's
// mailto:unsubscribe+TOKEN@Domain). It accepts mail only for such addresses with a validly signed
// token, so it is neither an open relay nor a sink for spam; the message itself is read and
// discarded, and its end performs the unsubscribe. Use it once: Serve, then Close.
type Inbound struct {
	DB      *pgxpool.Pool
	Service *Service
	// Domain is the domain of the unsubscribe addresses (and the name the server greets with).
	Domain string
	Logger *slog.Logger
	// MaxMessageBytes caps a message (default 256 KiB: an unsubscribe mail is a few hundred bytes).
	MaxMessageBytes int64
	// TLSConfig, if set, makes the server offer STARTTLS.
	TLSConfig *tls.Config

	once   sync.Once
	srv    *smtp.Server
	ctx    context.Context
	cancel context.CancelFunc
}

const (
	inboundTimeout   = time.Minute      // per read or write on a connection
	inboundWorkLimit = 30 * time.Second // per unsubscribe at the end of DATA
	inboundMaxRcpts  = 10               // per message
	inboundMaxBytes  = int64(256 << 10) // default MaxMessageBytes
	inboundLocalPart = "unsubscribe+"   // local part prefix of an unsubscribe address
)

var (
	errNoSuchAddress = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such address"}
	errInboundTemp   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
)

func (in *Inbound) server() *smtp.Server {
	in.once.Do(func() {
		in.ctx, in.cancel = context.WithCancel(context.Background())
		s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
			return &inboundSession{in: in}, nil
		}))
		s.Domain = in.Domain
		s.MaxMessageBytes = in.MaxMessageBytes
		if s.MaxMessageBytes <= 0 {
			s.MaxMessageBytes = inboundMaxBytes
		}
		s.MaxRecipients = inboundMaxRcpts
		s.ReadTimeout, s.WriteTimeout = inboundTimeout, inboundTimeout
		s.TLSConfig = in.TLSConfig
		s.ErrorLog = inboundErrorLog{in.logger()}
		in.srv = s
	})
	return in.srv
}

// Serve answers SMTP on ln until Close; it returns nil after Close.
func (in *Inbound) Serve(ln net.Listener) error {
	if in.Domain == "" {
		return errors.New("inbound: Domain is required")
	}
	return in.server().Serve(ln)
}

// Close stops listening and closes every connection; an unsubscribe in progress is cancelled
// (its transaction rolls back and the sender, having no 250, retries).
func (in *Inbound) Close() error {
	s := in.server()
	in.cancel()
	if err := s.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("inbound: %w", err)
	}
	return nil
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

// inboundSession is one SMTP transaction's state.
type inboundSession struct {
	in    *Inbound
	rcpts []Recipient
}

func (s *inboundSession) Mail(from string, opts *smtp.MailOptions) error { return nil }

func (s *inboundSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	r, ok := s.in.recipient(to)
	if !ok {
		return errNoSuchAddress
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

// Data discards the message and unsubscribes each recipient, each in its own transaction. A
// token naming a contact since erased is answered 250 (there is nothing left to do), one naming
// a purpose that does not exist 550, and a database failure 451, so the sender retries.
func (s *inboundSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err // ErrDataTooLarge among others; the server answers it
	}
	in := s.in
	for _, rcpt := range s.rcpts {
		ctx, cancel := context.WithTimeout(in.ctx, inboundWorkLimit)
		var changed bool
		err := pgx.BeginFunc(ctx, in.DB, func(tx pgx.Tx) error {
			var err error
			changed, err = in.Service.Unsubscribe(ctx, tx, rcpt, ChannelMailto, Evidence{})
			return err
		})
		cancel()
		log := in.logger().With("workspace_id", rcpt.WorkspaceID, "contact_id", rcpt.ContactID, "purpose_id", rcpt.PurposeID)
		switch {
		case errors.Is(err, ErrContactGone):
			log.Info("mailto unsubscribe: contact gone")
		case errors.Is(err, ErrBadToken):
			log.Warn("mailto unsubscribe: token names nothing", "err", err)
			return errNoSuchAddress
		case err != nil:
			log.Error("mailto unsubscribe failed", "err", err)
			return errInboundTemp
		default:
			log.Info("mailto unsubscribe", "changed", changed)
		}
	}
	return nil
}

func (s *inboundSession) Reset()        { s.rcpts = nil }
func (s *inboundSession) Logout() error { return nil }

// inboundErrorLog routes go-smtp's connection errors to slog.
type inboundErrorLog struct{ l *slog.Logger }

func (e inboundErrorLog) Printf(format string, v ...any) {
	e.l.Warn("inbound smtp: " + fmt.Sprintf(format, v...))
}
func (e inboundErrorLog) Println(v ...any) { e.l.Warn("inbound smtp: " + fmt.Sprint(v...)) }
