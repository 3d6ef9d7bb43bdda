package mailer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Transport hands one message to SMTP. A *Relay (one relay) and a *Relays (several, with
// failover) both are one; the send workers depend on this only. A signed message is sent as the
// bytes that were signed (see Composed).
type Transport interface {
	Send(ctx context.Context, msg Composed) (SendResult, error)
}

var (
	_ Transport = (*Relay)(nil)
	_ Transport = (*Relays)(nil)
)

// ErrNoRelay is wrapped by a Relays failure when no relay took the message because every relay
// was backing off or failed: the message is fine and only has to wait, so a worker may snooze
// rather than spend an attempt.
var ErrNoRelay = errors.New("no SMTP relay available")

// Relay failure kinds, the values of herald_relay_failures_total's kind label.
const (
	RelayFailConnect = "connect" // dial refused, greeting or EHLO failed
	RelayFailTimeout = "timeout" // dial or command timed out
	RelayFailTLS     = "tls"     // STARTTLS missing or the handshake failed
	RelayFailAuth    = "auth"    // SMTP AUTH missing or refused
	RelayFailDropped = "dropped" // connection dropped without a reply
	RelayFailBusy    = "busy"    // a 4xx about the relay: 421, 451 4.3.x/4.4.x/4.7.0, too many connections
)

var relayFailKinds = []string{RelayFailConnect, RelayFailTimeout, RelayFailTLS, RelayFailAuth, RelayFailDropped, RelayFailBusy}

// RelaysPolicy tunes when a relay backs off. The zero value means the defaults.
type RelaysPolicy struct {
	// Threshold is how many consecutive relay failures make a relay back off (default 3).
	Threshold int
	// BackoffMin is the first backoff (default 1s); it doubles on each failed probe up to
	// BackoffMax (default 60s), with ±10% jitter so that workers do not probe in step.
	BackoffMin, BackoffMax time.Duration
	// Now is the clock (default time.Now); tests drive backoffs with it.
	Now func() time.Time
}

// RelayMetrics are the relays' Prometheus series. The relay label is host:port, never credentials.
type RelayMetrics struct {
	Up        *prometheus.GaugeVec   // herald_relay_up{relay}
	Failures  *prometheus.CounterVec // herald_relay_failures_total{relay,kind}
	Failovers prometheus.Counter     // herald_relay_failovers_total
}

// NewRelayMetrics creates the relay series and registers them with reg.
func NewRelayMetrics(reg prometheus.Registerer) *RelayMetrics {
	m := &RelayMetrics{
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_relay_up",
			Help: "1 while an SMTP relay takes messages, 0 while it backs off after consecutive failures.",
		}, []string{"relay"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_relay_failures_total",
			Help: "Deliveries that failed because of the relay rather than the recipient, by kind.",
		}, []string{"relay", "kind"}),
		Failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_relay_failovers_total",
			Help: "Deliveries tried on a lower-priority relay because a higher one was backing off or failed.",
		}),
	}
	reg.MustRegister(m.Up, m.Failures, m.Failovers)
	return m
}

// Relays sends through several SMTP relays in priority order. A message goes to the most
// preferred relay that is not backing off; a relay failure (no connection, timeout, TLS or
// AUTH trouble, a dropped connection, a 4xx about the relay) moves it at once to the next relay,
// at most once per relay. Threshold consecutive relay failures make a relay back off; after the
// backoff one probe is let through, and its success makes the relay preferred again. An answer
// about the recipient (5.1.1, 4.2.2, 5.7.1...) says the relay works and is returned as it is.
type Relays struct {
	relays  []*breaker
	logger  *slog.Logger
	metrics *RelayMetrics
	policy  RelaysPolicy
}

// breaker is one relay and its health.
type breaker struct {
	relay *Relay
	name  string // host:port

	mu        sync.Mutex
	failures  int       // consecutive relay failures while closed
	level     int       // failed probes since the relay was last healthy: the backoff doubles with it
	openUntil time.Time // zero while healthy; the relay backs off until then
	probing   bool      // the one probe of a relay whose backoff ended is in flight
}

// NewRelays prepares relays in priority order, the first preferred. metrics may be nil.
func NewRelays(opts []RelayOptions, logger *slog.Logger, metrics *RelayMetrics, policy RelaysPolicy) (*Relays, error) {
	if len(opts) == 0 {
		return nil, errors.New("smtp relays: none configured")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if policy.Threshold <= 0 {
		policy.Threshold = 3
	}
	if policy.BackoffMin <= 0 {
		policy.BackoffMin = time.Second
	}
	if policy.BackoffMax < policy.BackoffMin {
		policy.BackoffMax = max(60*time.Second, policy.BackoffMin)
	}
	if policy.Now == nil {
		policy.Now = time.Now
	}
	rs := &Relays{logger: logger, metrics: metrics, policy: policy}
	seen := map[string]bool{}
	for i, o := range opts {
		name := net.JoinHostPort(o.SMTP.Host, strconv.Itoa(o.SMTP.Port))
		if seen[name] {
			rs.Close()
			return nil, fmt.Errorf("smtp relay %d: %s is configured twice", i+1, name)
		}
		seen[name] = true
		r, err := NewRelay(o)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("smtp relay %d (%s): %w", i+1, name, err)
		}
		rs.relays = append(rs.relays, &breaker{relay: r, name: name})
		if metrics != nil {
			metrics.Up.WithLabelValues(name).Set(1)
			for _, k := range relayFailKinds {
				metrics.Failures.WithLabelValues(name, k)
			}
		}
	}
	return rs, nil
}

// Send delivers msg through the first relay that takes it; each relay tried sends the same bytes
// (a signed message is not signed again). When no relay is available it
// returns at once, without dialling, a temporary failure wrapping ErrNoRelay: the message stays
// unsent and non-final, and its job is retried later.
func (rs *Relays) Send(ctx context.Context, msg Composed) (SendResult, error) {
	var (
		tried []string // "host:port: reply" of each relay that failed this message
		last  *SendFailure
	)
	for i, b := range rs.relays {
		probe, ok := b.acquire(rs.policy.Now())
		if !ok {
			continue
		}
		if i > 0 && rs.metrics != nil {
			rs.metrics.Failovers.Inc()
		}
		res, err := b.relay.Send(ctx, msg)
		if err == nil {
			rs.healthy(b, probe)
			return res, nil
		}
		if ctx.Err() != nil {
			// Our own deadline or shutdown says nothing about the relay.
			b.release(probe)
			return res, err
		}
		kind, fault := relayFault(res, err)
		if !fault {
			// The relay answered about the message or its recipient: it works.
			rs.healthy(b, probe)
			return res, err
		}
		rs.failed(b, probe, kind, res)
		var f *SendFailure
		if !errors.As(err, &f) {
			f = &SendFailure{Result: res, Err: err}
		}
		last = f
		tried = append(tried, b.name+": "+res.Reply)
	}
	if last == nil {
		res := SendResult{Temporary: true, Reply: ErrNoRelay.Error() + ": every relay is backing off" + rs.nextProbe()}
		return res, &SendFailure{Result: res, Err: fmt.Errorf("%w: every relay is backing off", ErrNoRelay)}
	}
	res := last.Result
	res.Temporary = true
	if len(tried) > 1 {
		res.Reply = truncate(strings.Join(tried, "; "), 900)
	}
	cause := last.Err
	if cause == nil {
		cause = errors.New(last.Result.Reply)
	}
	return res, &SendFailure{Result: res, Err: fmt.Errorf("%w: %w", ErrNoRelay, cause)}
}

// Close closes every relay's idle connections.
func (rs *Relays) Close() {
	for _, b := range rs.relays {
		b.relay.Close()
	}
}

// acquire says whether b may take a message now, and whether that message is the probe of a
// relay whose backoff has ended (only one probe at a time).
func (b *breaker) acquire(now time.Time) (probe, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.openUntil.IsZero():
		return false, true
	case now.Before(b.openUntil) || b.probing:
		return false, false
	default:
		b.probing = true
		return true, true
	}
}

// release gives back a probe that ended without telling anything about the relay.
func (b *breaker) release(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// healthy records that b answered. A relay backing off is made healthy by its probe only, not by
// a late answer to a message sent before it began backing off.
func (rs *Relays) healthy(b *breaker, probe bool) {
	b.mu.Lock()
	if !b.openUntil.IsZero() && !probe {
		b.mu.Unlock()
		return
	}
	recovered := probe
	b.failures, b.level, b.openUntil, b.probing = 0, 0, time.Time{}, false
	b.mu.Unlock()
	if recovered {
		rs.logger.Info("SMTP relay recovered", "relay", b.name)
		if rs.metrics != nil {
			rs.metrics.Up.WithLabelValues(b.name).Set(1)
		}
	}
}

// failed records a relay failure: the Threshold-th in a row, or a failed probe, makes b back off.
func (rs *Relays) failed(b *breaker, probe bool, kind string, res SendResult) {
	if rs.metrics != nil {
		rs.metrics.Failures.WithLabelValues(b.name, kind).Inc()
	}
	now := rs.policy.Now()
	b.mu.Lock()
	var backoff time.Duration
	switch {
	case probe:
		b.level++
		b.probing = false
		backoff = rs.backoff(b.level)
		b.openUntil = now.Add(backoff)
	case !b.openUntil.IsZero():
		// Already backing off: a message sent before that failed too.
	default:
		b.failures++
		if b.failures >= rs.policy.Threshold {
			backoff = rs.backoff(0)
			b.openUntil = now.Add(backoff)
		}
	}
	failures := b.failures
	b.mu.Unlock()
	if backoff == 0 {
		rs.logger.Debug("SMTP relay failure", "relay", b.name, "kind", kind, "smtp_code", res.Code, "reply", res.Reply)
		return
	}
	rs.logger.Warn("SMTP relay backing off; sending through the next relay", "relay", b.name, "kind", kind,
		"consecutive_failures", failures, "probe_failed", probe, "backoff", backoff.Round(time.Millisecond),
		"smtp_code", res.Code, "reply", res.Reply)
	if rs.metrics != nil {
		rs.metrics.Up.WithLabelValues(b.name).Set(0)
	}
}

// backoff is BackoffMin doubled level times, capped at BackoffMax, ±10%.
func (rs *Relays) backoff(level int) time.Duration {
	d := rs.policy.BackoffMin
	for i := 0; i < level && d < rs.policy.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, rs.policy.BackoffMax)
	return d + time.Duration(float64(d)*(rand.Float64()*0.2-0.1))
}

// nextProbe says when the first relay may be probed again.
func (rs *Relays) nextProbe() string {
	var next time.Time
	for _, b := range rs.relays {
		b.mu.Lock()
		if u := b.openUntil; !u.IsZero() && (next.IsZero() || u.Before(next)) {
			next = u
		}
		b.mu.Unlock()
	}
	if next.IsZero() {
		return ""
	}
	return fmt.Sprintf(" (next probe in %s)", max(next.Sub(rs.policy.Now()), 0).Round(100*time.Millisecond))
}

// relayFault says whether a failed delivery is the relay's trouble rather than the message's or
// the recipient's, and of which kind.
func relayFault(res SendResult, err error) (kind string, fault bool) {
	if errors.Is(err, errConnect) {
		// Whatever the code (a 554 greeting, a 535 AUTH refusal), the relay could not be used.
		return connectKind(err), true
	}
	if res.Code == 0 {
		if isTimeout(err) {
			return RelayFailTimeout, true
		}
		return RelayFailDropped, true
	}
	if res.Code >= 400 && res.Code < 500 && relayBusy(res) {
		return RelayFailBusy, true
	}
	return "", false
}

// relayBusy tells a 4xx about the relay (closing, out of resources, rate limiting) from one
// about a recipient (4.2.2 mailbox full, 4.7.1 policy, greylisting).
func relayBusy(res SendResult) bool {
	if res.Code == 421 {
		return true
	}
	enh := res.Enhanced
	if enh == "" {
		enh = enhancedRE.FindString(res.Reply)
	}
	switch {
	case strings.HasPrefix(enh, "4.3."), strings.HasPrefix(enh, "4.4."), enh == "4.7.0":
		return true
	case enh == "" && res.Code == 451: // "local error in processing"
		return true
	}
	reply := strings.ToLower(res.Reply)
	for _, s := range []string{"too many connections", "too many concurrent", "rate limit", "throttl"} {
		if strings.Contains(reply, s) {
			return true
		}
	}
	return false
}

func connectKind(err error) string {
	var (
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
	)
	text := err.Error()
	switch {
	case isTimeout(err):
		return RelayFailTimeout
	case errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), strings.Contains(text, "STARTTLS"),
		strings.Contains(text, "tls: "), strings.Contains(text, "x509: "):
		return RelayFailTLS
	case strings.Contains(text, "AUTH"):
		return RelayFailAuth
	default:
		return RelayFailConnect
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
