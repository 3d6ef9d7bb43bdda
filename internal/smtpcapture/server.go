package smtpcapture

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrDropConnection, returned by a DataHook, makes the server close the client's connection at
// the end of DATA without sending any reply, as a crashed or unreachable relay would.
var ErrDropConnection = errors.New("smtpcapture: drop connection")

// Options configure a Server. The zero value is a capture server on a free loopback port.
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" (the default) picks a free port.
	Addr string
	// Domain is the name the server greets and answers EHLO with; default "capture.local".
	Domain string
	// MaxMessageBytes is the largest message accepted (SIZE); default 30 MiB.
	MaxMessageBytes int64
	// Keep is how many messages are kept in memory, oldest dropped first; 0 means 1000, and a
	// negative value keeps none and only counts (for benchmarks).
	Keep int
	// RcptHook, if set, is asked about every RCPT TO; a non-nil error (ideally an
	// *smtp.SMTPError) rejects that recipient.
	RcptHook func(rcpt string) error
	// DataHook, if set, judges every message at the end of DATA. Return nil to accept, an
	// *smtp.SMTPError (e.g. 451 4.3.0 or 550 5.1.1) to refuse, or ErrDropConnection to close the
	// connection without a reply. It may be called from several connections at once.
	DataHook func(m *Message) error
	// AuthUser and AuthPass, if either is set, make AUTH PLAIN mandatory before MAIL FROM.
	AuthUser, AuthPass string
	// TLSConfig, if set, makes the server offer STARTTLS; AUTH is then only allowed after it.
	TLSConfig *tls.Config
	// Logger receives server events; nil discards them. Addresses are never logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Domain == "" {
		o.Domain = "capture.local"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 30 << 20
	}
	if o.Keep == 0 {
		o.Keep = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server is a running capture server. All its methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	smtp     *smtp.Server
	ln       *trackingListener
	store    *store
	attempts atomic.Int64

	closed    chan struct{}
	served    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start listens on opts.Addr and serves SMTP in a goroutine until Close.
func Start(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtpcapture: listen on %s: %w", opts.Addr, err)
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger,
		ln:     newTrackingListener(ln),
		store:  newStore(opts.Keep),
		closed: make(chan struct{}),
		served: make(chan struct{}),
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Domain
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.TLSConfig = opts.TLSConfig
	srv.AllowInsecureAuth = opts.TLSConfig == nil // loopback use; with TLS, AUTH needs STARTTLS
	srv.EnableSMTPUTF8 = true                     // raw bytes are stored as they come
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = errorLog{opts.Logger}
	s.smtp = srv

	go func() {
		defer close(s.served)
		if err := srv.Serve(s.ln); err != nil {
			s.log.Error("smtp capture server stopped", "err", err)
		}
	}()
	s.log.Info("smtp capture server listening", "addr", s.Addr())
	return s, nil
}

// Addr is the address the server listens on, e.g. "127.0.0.1:40123".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the TCP port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Close stops the server and closes every client connection, idle or not, without waiting for
// them to finish. Calling it again does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.closeErr = s.smtp.Close()
		// Serve may not have registered the listener with go-smtp yet; close it here too.
		if err := s.ln.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
		<-s.served
	})
	return s.closeErr
}

// Messages returns a copy of the kept messages, oldest first.
func (s *Server) Messages() []Message { return s.store.messages() }

// Count is the number of messages accepted in the server's lifetime, also when Keep is negative;
// Reset does not change it.
func (s *Server) Count() int64 { return s.store.total() }

// Attempts is the number of DATA transfers received in the server's lifetime, refused ones
// included.
func (s *Server) Attempts() int64 { return s.attempts.Load() }

// WaitFor blocks until at least n messages have been accepted since Start or the last Reset, and
// returns the kept messages, oldest first. If ctx ends or the server closes first, it returns the
// messages kept so far and an error.
func (s *Server) WaitFor(ctx context.Context, n int) ([]Message, error) {
	return s.store.waitFor(ctx, s.closed, n)
}

// Reset forgets the kept messages and restarts WaitFor's count. Count, Attempts and the ID
// sequence carry on.
func (s *Server) Reset() { s.store.reset() }

// errorLog adapts go-smtp's internal error reports to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.l.Warn("smtp capture server", "detail", fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) {
	e.l.Warn("smtp capture server", "detail", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
