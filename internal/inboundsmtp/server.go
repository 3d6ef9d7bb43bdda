package inboundsmtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"herald/internal/httpx"
)

// Server answers SMTP for its Routes on one or more listeners. Set the fields, then call Serve
// (once per listener, concurrently) and finally Close; a Server is not reused after Close.
type Server struct {
	// Domain is the name the server greets with (the MX host's mail domain).
	Domain string
	Routes []Route
	Logger *slog.Logger
	// TLSConfig, if set, makes the server offer STARTTLS.
	TLSConfig *tls.Config
	// MaxRecipients caps the recipients of one message (default 10).
	MaxRecipients int
	// Timeout bounds each read or write on a connection (default 1 minute).
	Timeout time.Duration
	// WorkLimit bounds the time a route spends on one message at the end of DATA (default 30 s).
	WorkLimit time.Duration

	once    sync.Once
	initErr error
	srv     *smtp.Server
	ctx     context.Context // cancelled by Close: the routes' work in flight
	cancel  context.CancelFunc

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // route deliveries in progress
}

// Defaults of the Server's limits.
const (
	DefaultMaxRecipients = 10
	DefaultTimeout       = time.Minute
	DefaultWorkLimit     = 30 * time.Second
)

func (s *Server) init() error {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		if s.Domain == "" {
			s.initErr = errors.New("inbound smtp: Domain is required")
			return
		}
		if len(s.Routes) == 0 {
			s.initErr = errors.New("inbound smtp: no routes")
			return
		}
		var maxBytes int64
		for _, r := range s.Routes {
			if r.accept == nil || r.deliver == nil || r.MaxMessageBytes <= 0 {
				s.initErr = fmt.Errorf("inbound smtp: route %q: build it with NewRoute and a positive size cap", r.Name)
				return
			}
			maxBytes = max(maxBytes, r.MaxMessageBytes)
		}
		srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
			return &session{s: s, rcpts: make([][]any, len(s.Routes))}, nil
		}))
		srv.Domain = s.Domain
		srv.MaxMessageBytes = maxBytes
		srv.MaxRecipients = orDefault(s.MaxRecipients, DefaultMaxRecipients)
		timeout := orDefault(s.Timeout, DefaultTimeout)
		srv.ReadTimeout, srv.WriteTimeout = timeout, timeout
		srv.TLSConfig = s.TLSConfig
		srv.ErrorLog = errorLog{s.logger()}
		s.srv = srv
	})
	return s.initErr
}

// orDefault returns v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve answers SMTP on ln until Close; it returns nil after Close. It may be called for several
// listeners at once: they share the routes, limits and Close.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.init(); err != nil {
		_ = ln.Close()
		return err
	}
	// Close closes the listeners go-smtp knows of; one handed to Serve while Close runs may not be
	// among them yet, so each Serve also closes its own when the server is closed.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-s.ctx.Done():
			_ = ln.Close()
		case <-stop:
		}
	}()
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		if s.ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("inbound smtp: %w", err)
	}
	return nil
}

// Close stops listening, closes every connection and cancels the routes' work in flight (a
// transaction rolls back and the sender, having no 250, retries), then waits for that work to
// return.
func (s *Server) Close() error {
	_ = s.init() // a server that never served closes all the same
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	s.cancel()
	var err error
	if s.srv != nil {
		if cerr := s.srv.Close(); cerr != nil && !errors.Is(cerr, smtp.ErrServerClosed) && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("inbound smtp: close: %w", cerr)
		}
	}
	s.inflight.Wait()
	return err
}

// begin registers a delivery in flight; false once the server is closed.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) logger() *slog.Logger { return httpx.LoggerOrDiscard(s.Logger) }

// errorLog routes go-smtp's connection errors to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.l.Warn("inbound smtp: " + fmt.Sprintf(format, v...))
}
func (e errorLog) Println(v ...any) { e.l.Warn("inbound smtp: " + fmt.Sprint(v...)) }

// session is one connection's state: the current transaction's recipients, by route.
type session struct {
	s     *Server
	rcpts [][]any // rcpts[i]: what Routes[i] accepted
}

// Mail accepts any reverse path: reports come from the null sender (MAIL FROM:<>), unsubscribes
// from anyone.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error { return nil }

// Rcpt hands the address to the routes in order; the first that accepts it takes it.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	for i, r := range ss.s.Routes {
		if v, ok := r.accept(to); ok {
			ss.rcpts[i] = append(ss.rcpts[i], v)
			return nil
		}
	}
	return NoSuchAddress()
}

// Data reads the message once, up to the largest cap among the routes it is for, and hands it to
// each of them in turn. A route whose own cap the message exceeds answers 552 without seeing it.
// The reply is the routes' if they agree; otherwise a temporary failure wins over a permanent
// one (the sender retries the whole message, and the routes' work is idempotent), and the first
// route's refusal over a later one's.
func (ss *session) Data(r io.Reader) error {
	s := ss.s
	var limit int64
	for i, rc := range ss.rcpts {
		if len(rc) > 0 {
			limit = max(limit, s.Routes[i].MaxMessageBytes)
		}
	}
	msg, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return err // ErrDataTooLarge among others; go-smtp answers it
	}
	if int64(len(msg)) > limit {
		return smtp.ErrDataTooLarge
	}
	if !s.begin() {
		return TryLater()
	}
	defer s.inflight.Done()
	var reply error
	for i, rc := range ss.rcpts {
		if len(rc) == 0 {
			continue
		}
		route := s.Routes[i]
		var err error = smtp.ErrDataTooLarge
		if int64(len(msg)) <= route.MaxMessageBytes {
			ctx, cancel := context.WithTimeout(s.ctx, orDefault(s.WorkLimit, DefaultWorkLimit))
			err = route.deliver(ctx, msg, rc)
			cancel()
		}
		reply = worse(reply, s.reply(route, err))
	}
	return reply
}

// reply turns a route's result into the SMTP reply, logging what is no reply of its own.
func (s *Server) reply(route Route, err error) error {
	var se *smtp.SMTPError
	switch {
	case err == nil || errors.As(err, &se):
		return err
	case s.ctx.Err() != nil:
		s.logger().Info("inbound smtp: delivery cancelled by shutdown", "route", route.Name, "err", err)
	default:
		s.logger().Error("inbound smtp: delivery failed", "route", route.Name, "err", err)
	}
	return TryLater()
}

// worse returns the reply that stands for both: an error over success, a temporary failure over
// a permanent one, otherwise the first.
func worse(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case !temporary(a) && temporary(b):
		return b
	}
	return a
}

func temporary(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Temporary()
}

func (ss *session) Reset() {
	for i := range ss.rcpts {
		ss.rcpts[i] = nil
	}
}

func (ss *session) Logout() error { return nil }
