package tracking

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"herald/internal/httpx"
)

// BounceReceiver is the SMTP receiver of the bounce addresses (bounces+TOKEN@domain, see VERP):
// it accepts mail only for such addresses with a validly signed token, so it is neither an open
// relay nor a sink for spam, parses the DSN or ARF report (ParseReport), and hands it to
// Feedback.Process for the message the token names. Use it once: Serve, then Close.
type BounceReceiver struct {
	VERP     VERP
	Feedback *Feedback
	Logger   *slog.Logger
	// MaxMessageBytes caps a report (default 1 MiB: a DSN quoting the whole returned message).
	MaxMessageBytes int64
	// TLSConfig, if set, makes the server offer STARTTLS.
	TLSConfig *tls.Config

	once   sync.Once
	srv    *smtp.Server
	ctx    context.Context
	cancel context.CancelFunc
}

const (
	bounceTimeout   = time.Minute      // per read or write on a connection
	bounceWorkLimit = 30 * time.Second // per report at the end of DATA
	bounceMaxRcpts  = 10               // per message
	bounceMaxBytes  = int64(1 << 20)   // default MaxMessageBytes
)

var (
	errNoSuchBounceAddress = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such address"}
	errBounceTemp          = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errBounceMalformed     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed report"}
)

func (b *BounceReceiver) server() *smtp.Server {
	b.once.Do(func() {
		b.ctx, b.cancel = context.WithCancel(context.Background())
		s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
			return &bounceSession{b: b}, nil
		}))
		s.Domain = b.VERP.Domain
		s.MaxMessageBytes = b.MaxMessageBytes
		if s.MaxMessageBytes <= 0 {
			s.MaxMessageBytes = bounceMaxBytes
		}
		s.MaxRecipients = bounceMaxRcpts
		s.ReadTimeout, s.WriteTimeout = bounceTimeout, bounceTimeout
		s.TLSConfig = b.TLSConfig
		s.ErrorLog = smtpErrorLog{b.logger()}
		b.srv = s
	})
	return b.srv
}

// Serve answers SMTP on ln until Close; it returns nil after Close.
func (b *BounceReceiver) Serve(ln net.Listener) error {
	if b.VERP.Domain == "" || b.VERP.Keys == nil || b.Feedback == nil {
		return errors.New("bounce receiver: VERP (domain and keys) and Feedback are required")
	}
	err := b.server().Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening and closes every connection; a report in progress is cancelled (its
// transaction rolls back and the sender, having no 250, retries).
func (b *BounceReceiver) Close() error {
	s := b.server()
	b.cancel()
	if err := s.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("bounce receiver: %w", err)
	}
	return nil
}

func (b *BounceReceiver) logger() *slog.Logger { return httpx.LoggerOrDiscard(b.Logger) }

// bounceSession is one SMTP transaction's state.
type bounceSession struct {
	b       *BounceReceiver
	targets []BounceTarget
}

// Mail accepts any reverse path: DSNs come from the null sender (MAIL FROM:<>).
func (s *bounceSession) Mail(from string, opts *smtp.MailOptions) error { return nil }

// Rcpt accepts only bounce addresses whose token verifies.
func (s *bounceSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	t, ok := s.b.VERP.Parse(to)
	if !ok {
		return errNoSuchBounceAddress
	}
	s.targets = append(s.targets, t)
	return nil
}

// Data reads the report and processes it for each recipient. A report that names a message
// since deleted, or that is no bounce (a successful DSN), is answered 250 and dropped; a message
// that is not mail at all 554; a database failure 451, so the sender retries.
func (s *bounceSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err // ErrDataTooLarge among others; the server answers it
	}
	b := s.b
	rep, err := ParseReport(bytes.NewReader(raw))
	if err != nil && rep.Kind == "" {
		b.logger().Warn("bounce receiver: unreadable report", "err", err)
		return errBounceMalformed
	}
	if rep.Kind == "" {
		b.logger().Info("bounce receiver: report is no bounce or complaint", "source", rep.Source, "detail", rep.Detail)
		return nil
	}
	for _, t := range s.targets {
		ctx, cancel := context.WithTimeout(b.ctx, bounceWorkLimit)
		_, err := b.Feedback.Process(ctx, Report{WorkspaceID: t.WorkspaceID, Kind: rep.Kind, Source: rep.Source,
			Target: &t, Status: rep.Status, Detail: rep.Detail, ProviderEventID: reportEventID(rep.ReportID, t)})
		cancel()
		log := b.logger().With("workspace_id", t.WorkspaceID, "verp_kind", t.Kind, "id", t.ID)
		switch {
		case errors.Is(err, ErrUnmatched):
			log.Info("bounce receiver: the message is gone")
		case err != nil:
			log.Error("bounce receiver: processing failed", "err", err)
			return errBounceTemp
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

func (s *bounceSession) Reset()        { s.targets = nil }
func (s *bounceSession) Logout() error { return nil }

// smtpErrorLog routes go-smtp's connection errors to slog.
type smtpErrorLog struct{ l *slog.Logger }

func (e smtpErrorLog) Printf(format string, v ...any) {
	e.l.Warn("bounce smtp: " + fmt.Sprintf(format, v...))
}
func (e smtpErrorLog) Println(v ...any) { e.l.Warn("bounce smtp: " + fmt.Sprint(v...)) }
