package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"net/textproto"
	"regexp"
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
	timeout time.Duration
	// pipeline sends a message's commands and content in one write where the relay allows it
	// (see deliverPipelined).
	pipeline bool
	bufs     sync.Pool     // *bytes.Buffer for pipelined transactions
	slots    chan struct{} // one token per connection that may be open
	mu       sync.Mutex
	idle     []*relayConn
	closed   bool
	maxIdle  time.Duration
	maxUses  int
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
	// NoPipelining sends each command and waits for its reply, as go-mail does, even to a relay
	// that offers PIPELINING and CHUNKING.
	NoPipelining bool
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
		client:   c,
		logger:   o.Logger,
		timeout:  o.Timeout,
		pipeline: !o.NoPipelining,
		slots:    make(chan struct{}, size),
		maxIdle:  30 * time.Second,
		maxUses:  1000,
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
func (r *Relay) Send(ctx context.Context, msg Composed) (SendResult, error) {
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
		d := r.deliver(conn.c, msg)
		if d.err == nil {
			r.put(conn)
			return SendResult{Code: 250, Reply: d.reply}, nil
		}
		if d.delivered {
			// The relay accepted the message and something after that failed: it is sent, and
			// sending it again would duplicate it. The connection is not trusted again.
			r.discard(conn)
			return SendResult{Code: 250, Reply: d.reply}, nil
		}
		err = d.err
		res := classify(err)
		if res.Code == 0 || d.broken {
			r.discard(conn)
			if res.Code == 0 && !d.answered && reused && try == 0 {
				continue
			}
		} else {
			r.put(conn)
		}
		return res, &SendFailure{Result: res, Err: err}
	}
}

// delivery is how one message's SMTP transaction ended.
type delivery struct {
	delivered bool   // the relay accepted the message (even if err reports a later failure)
	reply     string // the relay's answer to the message's content
	err       error
	answered  bool // the relay replied to at least one command of this transaction
	broken    bool // the connection is not to be used again
}

// deliver runs one SMTP transaction for msg on sc: pipelined when the relay allows it, else a
// command and its reply at a time, through go-mail (deliverSigned for a signed message).
func (r *Relay) deliver(sc *smtp.Client, msg Composed) delivery {
	if r.pipeline {
		if d, ok := r.deliverPipelined(sc, msg); ok {
			return d
		}
	}
	if msg.Signed() {
		return r.deliverSigned(sc, msg)
	}
	err := r.client.SendWithSMTPClient(sc, msg.Msg)
	// go-mail's errors do not say whether a reply came; a reused connection that fails without
	// a reply code is taken for stale (see Send).
	return delivery{delivered: msg.Msg.IsDelivered(), reply: msg.Msg.ServerResponse(), err: err}
}

// deliverSigned sends a signed message as go-mail's SendWithSMTPClient would (the same envelope,
// commands and DATA writer, RSET after a refused MAIL or RCPT), except that the content is the
// bytes that were signed: go-mail would write the message again, at the cost of composing it.
// As on go-mail's path, a failure without a reply is not marked answered (see Send).
func (r *Relay) deliverSigned(sc *smtp.Client, msg Composed) delivery {
	if !sc.HasConnection() {
		return delivery{err: fmt.Errorf("smtp: %w", mail.ErrNoActiveConnection)}
	}
	if err := sc.UpdateDeadline(r.timeout); err != nil {
		return delivery{err: fmt.Errorf("smtp: %w", err), broken: true}
	}
	if msg.Msg.Encoding() == mail.NoEncoding.String() {
		if ok, _ := sc.Extension("8BITMIME"); !ok {
			return delivery{err: &mail.SendError{Reason: mail.ErrNoUnencoded}}
		}
	}
	from, err := msg.Msg.GetSender(false)
	if err != nil {
		return delivery{err: fmt.Errorf("smtp: %w", err)}
	}
	rcpts, err := msg.Msg.GetRecipients()
	if err != nil {
		return delivery{err: fmt.Errorf("smtp: %w", err)}
	}
	refused := func(step string, err error) delivery {
		d := delivery{err: fmt.Errorf("smtp %s: %w", step, err)}
		if rerr := sc.Reset(); rerr != nil {
			d.broken = true
		}
		return d
	}
	if err := sc.Mail(from); err != nil {
		return refused("MAIL FROM", err)
	}
	var rcptErr error
	for _, rcpt := range rcpts {
		if err := sc.Rcpt(rcpt); err != nil {
			rcptErr = err // go-mail tries every recipient and reports the last refusal
		}
	}
	if rcptErr != nil {
		return refused("RCPT TO", rcptErr)
	}
	w, err := sc.Data()
	if err != nil {
		return delivery{err: fmt.Errorf("smtp DATA: %w", err)}
	}
	if _, err := msg.WriteTo(w); err != nil {
		return delivery{err: fmt.Errorf("smtp: write message: %w", err)}
	}
	if err := w.Close(); err != nil {
		return delivery{err: fmt.Errorf("smtp end of data: %w", err)}
	}
	var reply string
	if dc, ok := w.(*smtp.DataCloser); ok {
		reply = dc.ServerResponse()
	}
	return delivery{delivered: true, reply: reply}
}

// maxPooledBuffer is the largest transaction buffer kept for reuse.
const maxPooledBuffer = 1 << 20

// deliverPipelined sends MAIL FROM, RCPT TO and the whole message as one BDAT LAST chunk in a
// single write (RFC 2920 PIPELINING, RFC 3030 CHUNKING), then reads the three replies: one round
// trip per message instead of four (MAIL, RCPT, DATA, end of data), and no dot-stuffing. ok is
// false, with nothing sent, when the relay does not offer PIPELINING, CHUNKING and 8BITMIME or
// the message has other than one recipient (a refused recipient among several would not stop the
// chunk reaching the others, where go-mail sends to none): go-mail's path then sends it.
//
// The relay reads the chunk whatever its replies to MAIL and RCPT (its size is in the command),
// so a refused command never turns the content into commands. The content is the bytes go-mail's
// DATA writer would send, dot-stuffing aside: every bare LF becomes CRLF and the message ends
// with CRLF.
func (r *Relay) deliverPipelined(sc *smtp.Client, msg Composed) (delivery, bool) {
	for _, ext := range [...]string{"PIPELINING", "CHUNKING", "8BITMIME"} {
		if ok, _ := sc.Extension(ext); !ok {
			return delivery{}, false
		}
	}
	env, ok := envelopeOf(msg.Msg)
	if !ok {
		return delivery{}, false
	}
	smtputf8, _ := sc.Extension("SMTPUTF8")

	buf, _ := r.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			r.bufs.Put(buf)
		}
	}()
	payload, err := pipelinedTransaction(buf, msg, env, smtputf8)
	if errors.Is(err, errUnpipelinable) {
		return delivery{}, false // go-mail refuses it with its own error
	}
	if err != nil {
		return delivery{err: err}, true
	}

	if err := sc.UpdateDeadline(r.timeout); err != nil {
		return delivery{err: err, broken: true}, true
	}
	if _, err := sc.Text.W.Write(payload); err != nil {
		return delivery{err: fmt.Errorf("smtp: send: %w", err), broken: true}, true
	}
	if err := sc.Text.W.Flush(); err != nil {
		return delivery{err: fmt.Errorf("smtp: send: %w", err), broken: true}, true
	}
	var d delivery
	var first error
	for i, step := range [...]struct {
		name string
		code int
	}{{"MAIL FROM", 250}, {"RCPT TO", 25}, {"BDAT", 250}} {
		_, text, err := sc.Text.ReadResponse(step.code)
		var te *textproto.Error
		if err != nil && !errors.As(err, &te) {
			// No reply (a dropped connection or garbled answer): whatever came before, the
			// connection is done for.
			d.err, d.broken = fmt.Errorf("smtp %s: %w", step.name, err), true
			return d, true
		}
		d.answered = true
		if err != nil && first == nil {
			first = fmt.Errorf("smtp %s: %w", step.name, err)
		}
		if i == 2 && err == nil {
			d.delivered, d.reply = true, text
		}
	}
	if first == nil {
		return d, true
	}
	d.err = first
	if d.delivered {
		return d, true // accepted after all: see Send
	}
	// Leave the session clean for the next message, as go-mail does after a refusal.
	if err := sc.Reset(); err != nil {
		d.broken = true
	}
	return d, true
}

// envelope is a message's reverse path and its one recipient, as go-mail's GetSender(false) and
// GetRecipients name them.
type envelope struct {
	from, rcpt *netmail.Address
}

// envelopeOf reads msg's envelope where go-mail's getters would: the envelope sender, else the
// From address; the To, Cc and Bcc addresses. ok is false when there is no sender or other than
// one recipient. It reads the addresses the message holds instead of copying them out as strings
// (GetRecipients builds a list per message).
func envelopeOf(msg *mail.Msg) (env envelope, ok bool) {
	if from := msg.GetAddrHeader(mail.HeaderEnvelopeFrom); len(from) > 0 {
		env.from = from[0]
	} else if from := msg.GetAddrHeader(mail.HeaderFrom); len(from) > 0 {
		env.from = from[0]
	} else {
		return envelope{}, false
	}
	n := 0
	for _, h := range [...]mail.AddrHeader{mail.HeaderTo, mail.HeaderCc, mail.HeaderBcc} {
		for _, a := range msg.GetAddrHeader(h) {
			env.rcpt = a
			n++
		}
	}
	return env, n == 1
}

// appendPath appends a's address as go-mail writes it in MAIL FROM and RCPT TO: "<local@domain>",
// with the local part quoted where RFC 5322 needs it (net/mail's Address.String without the
// name). ok is false for an address holding CR or LF, which go-mail refuses with its own error.
func appendPath(b []byte, a *netmail.Address) ([]byte, bool) {
	if plainAddress(a.Address) {
		return append(append(append(b, '<'), a.Address...), '>'), true
	}
	path := (&netmail.Address{Address: a.Address}).String()
	if strings.ContainsAny(path, "\r\n") {
		return b, false
	}
	return append(b, path...), true
}

// errUnpipelinable stops pipelinedTransaction, with nothing written, for an envelope that
// go-mail's own path must refuse.
var errUnpipelinable = errors.New("smtp: envelope address with a line break")

// pipelinedTransaction writes into buf, and returns, one message's pipelined transaction: its MAIL
// FROM and RCPT TO commands, BDAT with the content's size and LAST, then the content (see
// deliverPipelined).
func pipelinedTransaction(buf *bytes.Buffer, msg Composed, env envelope, smtputf8 bool) ([]byte, error) {
	var cmds [256]byte
	head := append(cmds[:0], "MAIL FROM:"...)
	head, ok := appendPath(head, env.from)
	if !ok {
		return nil, errUnpipelinable
	}
	head = append(head, " BODY=8BITMIME"...)
	if smtputf8 {
		head = append(head, " SMTPUTF8"...)
	}
	head = append(head, "\r\nRCPT TO:"...)
	if head, ok = appendPath(head, env.rcpt); !ok {
		return nil, errUnpipelinable
	}
	head = append(head, "\r\n"...)

	// The commands go in front of the content once its size is known: reserve room for them.
	const bdatMax = len("BDAT 18446744073709551615 LAST\r\n")
	reserve := len(head) + bdatMax
	buf.Reset()
	for n := reserve; n > 0; n -= min(n, len(reservePad)) {
		buf.WriteString(reservePad[:min(n, len(reservePad))])
	}
	// go-mail writes CRLF line ends itself (headers, multipart delimiters, quoted-printable and
	// base64 lines), so the message (a signed one as it was signed) goes straight into buf and is
	// checked for a bare LF after; only content that has one, such as an unencoded part, is
	// copied again with CRLF.
	if _, err := msg.WriteTo(buf); err != nil {
		return nil, fmt.Errorf("smtp: write message: %w", err)
	}
	if i := bareLF(buf.Bytes()[reserve:], false); i >= 0 {
		rest := bytes.Clone(buf.Bytes()[reserve+i:])
		buf.Truncate(reserve + i)
		cw := crlfWriter{b: buf}
		_, _ = cw.Write(rest)
	}
	endLine(buf, reserve)
	head = append(head, "BDAT "...)
	head = strconv.AppendInt(head, int64(buf.Len()-reserve), 10)
	head = append(head, " LAST\r\n"...)
	payload := buf.Bytes()[reserve-len(head):]
	copy(payload, head)
	return payload, nil
}

// reservePad fills the room reserved for a pipelined transaction's commands.
const reservePad = "                                                                "

// crlfWriter copies a message into b with every line ending CRLF, as textproto's DATA writer
// sends it.
type crlfWriter struct {
	b  *bytes.Buffer
	cr bool // the last byte written was CR
}

func (w *crlfWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bareLF(p, w.cr)
		if i < 0 {
			w.b.Write(p)
			w.cr = p[len(p)-1] == '\r'
			break
		}
		w.b.Write(p[:i])
		w.b.WriteString("\r\n")
		w.cr = false
		p = p[i+1:]
	}
	return n, nil
}

// bareLF returns the index of the first LF in p that does not follow a CR, or -1; cr tells
// whether the byte before p was a CR.
func bareLF(p []byte, cr bool) int {
	for off := 0; ; {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			return -1
		}
		i += off
		if i == 0 && !cr || i > 0 && p[i-1] != '\r' {
			return i
		}
		off = i + 1
	}
}

// endLine terminates the last line of the message that starts at start in b, as the DATA
// writer's Close does.
func endLine(b *bytes.Buffer, start int) {
	m := b.Bytes()[start:]
	switch {
	case len(m) == 0 || m[len(m)-1] == '\n':
	case m[len(m)-1] == '\r':
		b.WriteByte('\n')
	default:
		b.WriteString("\r\n")
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
	if te != nil && res.Enhanced == "" {
		res.Enhanced = leadingEnhancedRE.FindString(te.Msg)
	}
	if res.Code >= 500 && res.Code < 600 {
		res.Temporary = false
	}
	return res
}

// leadingEnhancedRE is an RFC 3463 enhanced status code at the start of a reply's text.
var leadingEnhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

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
