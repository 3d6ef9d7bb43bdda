package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/config"
	"herald/internal/db"
	"herald/internal/inboundsmtp"
	"herald/internal/queue"
	"herald/internal/smtpcapture"
	"herald/mailer"
	"herald/migrations"
	"herald/tracking"
)

type mode int

const (
	modeServe mode = iota // HTTP API only
	modeWork              // River workers (and ops endpoints)
	modeDev               // both, plus a capture SMTP server and a demo workspace
)

func (m mode) String() string {
	return [...]string{modeServe: "serve", modeWork: "work", modeDev: "dev"}[m]
}

// app holds what a running process wires together; nothing of it is global.
type app struct {
	cfg     config.Config
	logger  *slog.Logger
	pool    *pgxpool.Pool
	river   *river.Client[pgx.Tx]
	reg     *prometheus.Registry
	metrics *mailer.Metrics
	consent *consent.Service
	relay   *mailer.Relays
	capture *smtpcapture.Server
	// inbound is the SMTP receiver (HERALD_INBOUND_ADDR, and HERALD_BOUNCE_ADDR if another) of
	// mailto unsubscribes and of DSN and ARF reports to the VERP addresses; feedback acts on the
	// reports and on the provider webhooks.
	inbound  *inboundsmtp.Server
	feedback *tracking.Feedback
	// outcomes commits campaign send outcomes (group commit); closed after the workers stop.
	outcomes *campaigns.OutcomeWriter
	// links are the campaigns' tracked links (the batch worker stores them, the click redirect
	// reads them); events buffers opens and clicks and writes them in batches (serve and dev),
	// closed after the HTTP server stops and before the pool.
	links  *tracking.Links
	events *tracking.EventWriter
	mode   mode
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string, m mode) error {
	fs := flag.NewFlagSet(m.String(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "HTTP listen address (overrides HERALD_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, logger, err := setup(getenv, stderr)
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Addr = *addr
	}
	if m == modeWork {
		workGC(getenv)
	}
	a, err := newApp(ctx, cfg, logger, m)
	if err != nil {
		return err
	}
	defer a.close()
	return a.run(ctx)
}

func newApp(ctx context.Context, cfg config.Config, logger *slog.Logger, m mode) (*app, error) {
	a := &app{cfg: cfg, logger: logger, mode: m, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pool, err := db.Open(ctx, cfg.DatabaseURL, int32(cfg.DBPool))
	if err != nil {
		return nil, err
	}
	a.pool = pool
	if err := migrations.CheckCurrent(ctx, pool); err != nil {
		a.close()
		return nil, err
	}
	a.metrics = mailer.NewMetrics(a.reg)
	a.reg.MustRegister(queue.NewDepthCollector(pool, logger, mailer.QueueTransactional, mailer.QueueMarketing, campaigns.QueueCampaigns))
	a.reg.MustRegister(consent.NewOverdueCollector(pool, logger, nil))
	if err := retentionDefaults(cfg).Validate(); err != nil {
		a.close()
		return nil, fmt.Errorf("HERALD_RETENTION_*: %w", err)
	}
	keys, err := consentKeys(cfg, m)
	if err != nil {
		a.close()
		return nil, err
	}
	a.consent = &consent.Service{Keys: keys, Metrics: consent.NewMetrics(a.reg), Logger: logger}
	a.feedback = &tracking.Feedback{DB: pool, Consent: a.consent, Metrics: tracking.NewFeedbackMetrics(a.reg), Logger: logger}
	verp := tracking.VERP{Keys: keys, Domain: cfg.BounceDomain}
	a.links = tracking.NewLinks(pool, 0, 0)
	if m != modeWork {
		a.events = &tracking.EventWriter{DB: pool, Consent: a.consent, Metrics: tracking.NewEventMetrics(a.reg), Logger: logger}
		a.events.Start()
	}

	if m == modeDev {
		a.capture, err = smtpcapture.Start(smtpcapture.Options{Addr: cfg.DevSMTPAddr, Logger: logger})
		if err != nil {
			a.close()
			return nil, fmt.Errorf("capture SMTP server on %s: %w", cfg.DevSMTPAddr, err)
		}
	}
	opts := queue.Options{Logger: logger, FetchCooldown: cfg.FetchCooldown}
	if m != modeServe {
		relays := make([]mailer.RelayOptions, len(cfg.Relays))
		for i, r := range cfg.Relays {
			relays[i] = mailer.RelayOptions{SMTP: r, HELO: cfg.HELO, Timeout: cfg.SMTPTimeout, Size: cfg.SMTPPoolSize, Logger: logger}
		}
		a.relay, err = mailer.NewRelays(relays, logger, mailer.NewRelayMetrics(a.reg), mailer.RelaysPolicy{})
		if err != nil {
			a.close()
			return nil, err
		}
		dkim, err := mailer.LoadDKIM(cfg.DKIMKeys)
		if err != nil {
			a.close()
			return nil, err
		}
		if dkim != nil {
			logger.Info("DKIM signing", "domains", dkim.Domains())
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, &mailer.SendWorker{DB: pool, Consent: a.consent, Relay: a.relay, Metrics: a.metrics, Logger: logger,
			RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, SMTPTimeout: cfg.SMTPTimeout,
			BaseURL: cfg.BaseURL, InboundDomain: cfg.InboundDomain, DKIM: dkim, ReturnPath: verp.MessageAddress})
		river.AddWorker(workers, &consent.SubscribeExpiryWorker{DB: pool, Metrics: a.consent.Metrics, Logger: logger})
		a.outcomes = &campaigns.OutcomeWriter{DB: pool, Logger: logger}
		river.AddWorker(workers, &campaigns.SendBatchWorker{DB: pool, Consent: a.consent, Relay: a.relay,
			States:   &campaigns.StateCache{DB: pool, BaseURL: cfg.BaseURL, InboundDomain: cfg.InboundDomain, DKIM: dkim, Logger: logger},
			Outcomes: a.outcomes, Metrics: a.metrics, Logger: logger, MessageIDDomain: cfg.MessageIDDomain, ReturnPath: verp.RecipientAddress,
			Lease: cfg.CampaignLease, RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, Parallel: cfg.CampaignParallel,
			Tracking: &tracking.Tracker{Consent: a.consent, Links: a.links, BaseURL: cfg.BaseURL}})
		river.AddWorker(workers, &campaigns.FanOutWorker{DB: pool, Consent: a.consent, Logger: logger, BatchSize: cfg.CampaignBatch})
		river.AddWorker(workers, &campaigns.RequeueWorker{DB: pool, Logger: logger, BatchSize: cfg.CampaignBatch})
		river.AddWorker(workers, &campaigns.SweepWorker{DB: pool, Logger: logger})
		river.AddWorker(workers, newRetentionWorker(pool, cfg, consent.NewRetentionMetrics(a.reg), logger))
		opts.Workers = workers
		opts.Queues = map[string]river.QueueConfig{
			mailer.QueueTransactional: {MaxWorkers: cfg.Workers},
			mailer.QueueMarketing:     {MaxWorkers: cfg.MarketingWorkers},
			river.QueueDefault:        {MaxWorkers: 2}, // housekeeping: subscribe-request expiry, retention
			campaigns.QueueCampaigns:  {MaxWorkers: cfg.CampaignWorkers},
		}
		opts.PeriodicJobs = append([]*river.PeriodicJob{consent.SubscribeExpiryJob(), consent.RetentionJob(cfg.RetentionInterval)},
			campaigns.PeriodicJobs(cfg.CampaignSweep)...)
	}
	a.river, err = queue.New(pool, opts)
	if err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// run serves HTTP and works jobs until ctx ends, then drains: the HTTP server stops taking
// requests and finishes those in flight, River finishes the jobs it is working (up to
// HERALD_SHUTDOWN_TIMEOUT, then cancels them so they are retried), connections close.
func (a *app) run(ctx context.Context) error {
	if a.mode != modeServe {
		queue.CountOutcomes(ctx, a.river, a.reg)
		if err := a.river.Start(ctx); err != nil {
			return fmt.Errorf("start workers: %w", err)
		}
	}
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           a.router(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // contact imports stream large bodies
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 3) // the HTTP server and up to two inbound SMTP listeners
	go func() { errc <- srv.Serve(ln) }()
	if a.mode != modeWork {
		if err := a.serveInbound(errc); err != nil {
			return err
		}
	}
	if a.cfg.PprofAddr != "" {
		if err := a.servePprof(ctx); err != nil {
			return err
		}
	}
	a.logger.Info("herald started", "mode", a.mode.String(), "addr", ln.Addr().String())
	if a.mode == modeDev {
		if err := a.announceDev(ctx, ln.Addr().String()); err != nil {
			return err
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	a.logger.Info("shutting down: draining requests and in-flight jobs", "timeout", a.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		a.logger.Warn("http shutdown", "err", err)
	}
	if a.inbound != nil {
		if err := a.inbound.Close(); err != nil {
			a.logger.Warn("inbound SMTP receiver shutdown", "err", err)
		}
	}
	if a.mode != modeServe {
		if err := a.river.Stop(sctx); err != nil {
			a.logger.Warn("jobs still running at shutdown timeout; cancelling them (they will be retried)", "err", err)
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			if err := a.river.StopAndCancel(cctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				a.logger.Warn("stop workers", "err", err)
			}
		}
	}
	a.logger.Info("stopped")
	return nil
}

// serveInbound starts the SMTP receiver, one server with the mailto unsubscribe and the bounce
// routes, on HERALD_INBOUND_ADDR and on HERALD_BOUNCE_ADDR when that is set and another address;
// neither set: no receiver.
func (a *app) serveInbound(errc chan<- error) error {
	var addrs []string
	for _, addr := range []string{a.cfg.InboundAddr, a.cfg.BounceAddr} {
		if addr != "" && !slices.Contains(addrs, addr) {
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	unsubscribes, err := (&consent.Inbound{DB: a.pool, Service: a.consent, Domain: a.cfg.InboundDomain, Logger: a.logger}).Route()
	if err != nil {
		return err
	}
	bounces, err := (&tracking.BounceReceiver{VERP: tracking.VERP{Keys: a.consent.Keys, Domain: a.cfg.BounceDomain},
		Feedback: a.feedback, Logger: a.logger}).Route()
	if err != nil {
		return err
	}
	a.inbound = &inboundsmtp.Server{Domain: a.cfg.InboundDomain, Routes: []inboundsmtp.Route{unsubscribes, bounces}, Logger: a.logger}
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			_ = a.inbound.Close() // and the listener opened before, if any
			return fmt.Errorf("listen for inbound SMTP (mailto unsubscribes, bounce reports) on %s: %w", addr, err)
		}
		go func() {
			if err := a.inbound.Serve(ln); err != nil {
				errc <- fmt.Errorf("inbound SMTP receiver: %w", err)
			}
		}()
		a.logger.Info("inbound SMTP receiver started", "addr", ln.Addr().String(),
			"unsubscribe_domain", a.cfg.InboundDomain, "bounce_domain", a.cfg.BounceDomain)
	}
	return nil
}

// Garbage collector defaults of `herald work` (see workGC).
const (
	workGCPercent   = 400
	workMemoryLimit = 160 << 20
)

// workGC trades memory for CPU in `herald work`, unless GOGC or GOMEMLIMIT say otherwise: a
// campaign allocates a few short-lived buffers per message over a small live heap (~10 MB), so
// collecting when the heap has grown 5x rather than 2x cuts the collector's CPU (about a tenth
// of the worker's at the default) for some tens of MB; the soft limit makes it collect sooner
// again before the process's memory nears 200 MB.
func workGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(workGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(workMemoryLimit)
	}
}

// servePprof serves net/http/pprof on HERALD_PPROF_ADDR until ctx ends: a debug listener for
// profiling a running process (campaign sending, say), off unless set, never on the API's port.
func (a *app) servePprof(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("listen for pprof on %s: %w", a.cfg.PprofAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Warn("pprof listener", "err", err)
		}
	}()
	a.logger.Warn("pprof debug listener on; do not expose it", "addr", ln.Addr().String())
	return nil
}

// consentKeys builds the consent package's keys from the configuration. `herald dev` falls back to
// fixed development keys; serve and work refuse to start without real ones.
func consentKeys(cfg config.Config, m mode) (*consent.Keys, error) {
	if cfg.HashKey == "" && cfg.TokenKeys == "" && m == modeDev {
		return consent.DevKeys(), nil
	}
	if cfg.HashKey == "" || cfg.TokenKeys == "" {
		return nil, errors.New("HERALD_HASH_KEY and HERALD_TOKEN_KEYS are required (random secrets; see README)")
	}
	return consent.NewKeys(cfg.HashKey, cfg.TokenKeys)
}

func (a *app) close() {
	if a.events != nil {
		a.events.Close() // the HTTP server has stopped: write the buffered opens and clicks
	}
	if a.outcomes != nil {
		a.outcomes.Close() // the workers have stopped: write what they left queued
	}
	if a.relay != nil {
		a.relay.Close()
	}
	if a.capture != nil {
		_ = a.capture.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// announceDev creates the demo workspace and data, and prints how to use them.
func (a *app) announceDev(ctx context.Context, addr string) error {
	d, err := setupDemo(ctx, a.pool, a.consent)
	if err != nil {
		return err
	}
	base := "http://" + addr
	fmt.Fprintf(os.Stdout, `
Herald is running (dev mode).
  API:            %[1]s/v1        (workspace "demo", key below, all scopes)
  Captured mail:  %[1]s/dev/outbox   (SMTP capture server on %[3]s)
  Metrics:        %[1]s/metrics
  Health:         %[1]s/healthz  %[1]s/readyz
  API key:        %[2]s

Try a transactional message:
  curl -s %[1]s/v1/messages -H 'Authorization: Bearer %[2]s' -H 'Idempotency-Key: hello-1' \
    -H 'Content-Type: application/json' \
    -d '{"from":"Demo <demo@example.com>","to":"you@example.com","subject":"Hello","text":"It works."}'

A marketing message to contact demo-1, who opted in to the "newsletter" purpose (its raw source in
the outbox shows List-Unsubscribe; open the /u/... link of its footer for the preference centre):
  curl -s %[1]s/v1/messages -H 'Authorization: Bearer %[2]s' -H 'Idempotency-Key: news-1' \
    -H 'Content-Type: application/json' \
    -d '{"stream":"marketing","purpose":"newsletter","from":"Demo <demo@example.com>","contact":"demo-1","subject":"News","html":"<p>Hello!</p>"}'
  curl -s %[1]s/v1/contacts/demo-1/consents -H 'Authorization: Bearer %[2]s'

Double opt-in (no API key; the confirmation email lands in the outbox):
  curl -s %[1]s/v1/subscribe -d form_key=%[4]s -d email=new@example.com -d purposes=newsletter

`, base, d.key, a.cfg.DevSMTPAddr, d.formKey)
	return nil
}
