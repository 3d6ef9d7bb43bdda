package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"herald/internal/config"
)

// Relay hands messages to one SMTP relay over a pool of reusable connections. go-mail's Client
// serialises Send on one connection, so each delivery takes its own pooled *smtp.Client and uses
// SendWithSMTPClient; at most Size connections are open at once.
type Relay struct {
	client  *mail.Client
	logger  *slog.Logger
	slots   chan struct{} // one token per connection that may be open
	mu      sync.Mutex
	idle    []*relayConn
	closed  bool
	maxIdle time.Duration
	maxUses int
}

type relayConn struct {
	c        *smtp.Client
	lastUsed time.Time
	uses     int
}

// RelayOptions configures NewRelay.
type RelayOptions struct {
	SMTP    config.SMTP
	HELO    string
	Timeout time.Duration
	Size    int
	Logger  *slog.Logger
	// TLSConfig overrides the TLS settings (tests use it to trust a local certificate).
	TLSConfig *tls.Config
}

// NewRelay prepares a relay; connections are dialled on demand.
func NewRelay(o RelayOptions) (*Relay, error) {
	opts := []mail.Option{
		mail.WithPort(o.SMTP.Port),
		mail.WithTimeout(o.Timeout),
		mail.WithoutNoop(), // a stale pooled connection is detected by the send itself and redialled
		// No RSET after an accepted message: the session is already back in its initial state
		// (RFC 5321 4.1.1.4), and a failed RSET after the relay took the message must not make it
		// look failed (it would be sent again). go-mail still resets after a refused MAIL or RCPT.
		mail.WithoutRset(),
	}
	if o.HELO != "" {
		opts = append(opts, mail.WithHELO(o.HELO))
	}
	switch {
	case o.SMTP.ImplicitTLS:
		opts = append(opts, mail.WithSSL())
	case o.SMTP.TLS == config.TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case o.SMTP.TLS == config.TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if o.TLSConfig != nil {
		opts = append(opts, mail.WithTLSConfig(o.TLSConfig))
	}
	if o.SMTP.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(o.SMTP.Username), mail.WithPassword(o.SMTP.Password))
	}
	c, err := mail.NewClient(o.SMTP.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp relay: %w", err)
	}
	size := max(o.Size, 1)
	return &Relay{
		client:  c,
		logger:  o.Logger,
		slots:   make(chan struct{}, size),
		maxIdle: 30 * time.Second,
		maxUses: 1000,
	}, nil
}

// errConnect marks a failure to dial, greet, secure or log into the relay: Relays counts it
// against the relay whatever the reply code.
var errConnect = errors.New("connect to relay")

// SendResult is the relay's answer to one delivery.
type SendResult struct {
	// Code is the SMTP reply code (250 on success); 0 when the connection failed before a reply.
	Code int
	// Enhanced is the RFC 3463 enhanced status code when the relay gave one.
	Enhanced string
	// Reply is the relay's reply text, or the connection error.
	Reply string
	// Temporary is true when a later attempt may succeed (4xx, or no reply at all).
	Temporary bool
}

// Send delivers msg. A nil error means the relay accepted it; otherwise the error is a *SendFailure.
func (r *Relay) Send(ctx context.Context, msg *mail.Msg) (SendResult, error) {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		res := SendResult{Temporary: true, Reply: "no relay connection free: " + ctx.Err().Error()}
		return res, &SendFailure{Result: res}
	}
	defer func() { <-r.slots }()

	// A pooled connection may have been closed by the relay while idle: then the send fails
	// without any SMTP reply, and we try once more on a fresh connection.
	for try := 0; ; try++ {
		conn, reused, err := r.take(ctx)
		if err != nil {
			// Failing to connect, negotiate TLS or authenticate is the relay's trouble (or ours),
			// never the message's: it is always temporary, so messages wait rather than fail.
			res := classify(err)
			res.Temporary = true
			return res, &SendFailure{Result: res, Err: fmt.Errorf("%w: %w", errConnect, err)}
		}
		err = r.client.SendWithSMTPClient(conn.c, msg)
		if err == nil {
			r.put(conn)
			return SendResult{Code: 250, Reply: msg.ServerResponse()}, nil
		}
		if msg.IsDelivered() {
			// The relay accepted the message and something after that failed: it is sent, and
			// sending it again would duplicate it. The connection is not trusted again.
			r.discard(conn)
			return SendResult{Code: 250, Reply: msg.ServerResponse()}, nil
		}
		res := classify(err)
		if res.Code == 0 {
			r.discard(conn)
			if reused && try == 0 {
				continue
			}
		} else {
			r.put(conn)
		}
		return res, &SendFailure{Result: res, Err: err}
	}
}

// take returns an idle connection (reused = true) or dials a new one.
func (r *Relay) take(ctx context.Context) (*relayConn, bool, error) {
	now := time.Now()
	r.mu.Lock()
	for len(r.idle) > 0 {
		c := r.idle[len(r.idle)-1]
		r.idle = r.idle[:len(r.idle)-1]
		if now.Sub(c.lastUsed) < r.maxIdle {
			r.mu.Unlock()
			return c, true, nil
		}
		go r.discard(c)
	}
	r.mu.Unlock()
	sc, err := r.client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return nil, false, err
	}
	return &relayConn{c: sc}, false, nil
}

func (r *Relay) put(c *relayConn) {
	c.uses++
	c.lastUsed = time.Now()
	r.mu.Lock()
	if r.closed || c.uses >= r.maxUses {
		r.mu.Unlock()
		r.discard(c)
		return
	}
	r.idle = append(r.idle, c)
	r.mu.Unlock()
}

func (r *Relay) discard(c *relayConn) {
	if err := r.client.CloseWithSMTPClient(c.c); err != nil {
		_ = c.c.Close()
	}
}

// Close closes idle connections; connections in use are closed when their delivery ends.
func (r *Relay) Close() {
	r.mu.Lock()
	idle := r.idle
	r.idle, r.closed = nil, true
	r.mu.Unlock()
	for _, c := range idle {
		r.discard(c)
	}
}

// SendFailure is a delivery the relay did not accept.
type SendFailure struct {
	Result SendResult
	Err    error
}

// Error describes the failure without the recipient addresses go-mail puts in its error text, so
// that it can be logged.
func (f *SendFailure) Error() string {
	if f.Err == nil {
		return "smtp: " + f.Result.Reply
	}
	return "smtp: " + withoutAddresses(f.Err.Error())
}

func (f *SendFailure) Unwrap() error { return f.Err }

// classify turns a go-mail error into a SendResult.
func classify(err error) SendResult {
	res := SendResult{Reply: withoutAddresses(err.Error()), Temporary: true}
	var se *mail.SendError
	if errors.As(err, &se) {
		res.Code = se.ErrorCode()
		res.Enhanced = se.EnhancedStatusCode()
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		if res.Code == 0 {
			res.Code = te.Code
		}
		res.Reply = strconv.Itoa(te.Code) + " " + te.Msg
	}
	if res.Code >= 500 && res.Code < 600 {
		res.Temporary = false
	}
	return res
}

// withoutAddresses removes the recipient list and Message-ID that go-mail appends to its error
// text, so a reply can be stored and logged without personal data.
func withoutAddresses(s string) string {
	for _, marker := range []string{", affected recipient(s):", ", affected message ID:"} {
		if i := strings.Index(s, marker); i >= 0 {
			s = s[:i]
		}
	}
	return truncate(s, 900)
}
