package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/httpx"
	"herald/internal/workspace"
	"herald/mailer"
	"herald/templates"
	"herald/tracking"
)

// router is Herald's one HTTP router: ops endpoints everywhere, the API where this process
// serves it, and the outbox of the capture SMTP server in dev mode.
func (a *app) router() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, a.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, a.logger, httpx.NotFound("no such endpoint"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, a.logger, httpx.NewProblem(http.StatusMethodNotAllowed, r.Method+" is not allowed here"))
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.pool.Ping(ctx); err != nil {
			a.logger.Warn("readiness: database unreachable", "err", err)
			httpx.WriteError(w, r, a.logger, httpx.NewProblem(http.StatusServiceUnavailable, "database unreachable"))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	r.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))

	if a.mode != modeWork {
		msgs := &mailer.Handler{DB: a.pool, River: a.river, Logger: a.logger, Metrics: a.metrics,
			MaxBodyBytes: a.cfg.MaxBodyBytes, MaxAttempts: a.cfg.MaxAttempts, MessageIDDomain: a.cfg.MessageIDDomain}
		cts := &contacts.Handler{DB: a.pool, Logger: a.logger, MaxBodyBytes: a.cfg.MaxBodyBytes, MaxImportBytes: a.cfg.MaxImportBytes}
		tpls := &templates.Handler{DB: a.pool, Logger: a.logger, MaxBodyBytes: a.cfg.MaxBodyBytes, BaseURL: a.cfg.BaseURL,
			TestSender: &mailer.TemplateTestSender{DB: a.pool, River: a.river, MaxAttempts: a.cfg.MaxAttempts, MessageIDDomain: a.cfg.MessageIDDomain}}
		cons := &consent.Handler{DB: a.pool, Service: a.consent, Logger: a.logger, MaxBodyBytes: a.cfg.MaxBodyBytes,
			BaseURL: a.cfg.BaseURL, SubscribeTTL: a.cfg.SubscribeTTL,
			Mailer: &mailer.ConfirmationMailer{River: a.river, MaxAttempts: a.cfg.MaxAttempts, MessageIDDomain: a.cfg.MessageIDDomain}}
		// Data-subject rights: every package holding personal data contributes its part.
		cons.Rights = consent.NewRights(a.consent,
			&mailer.RightsMailer{River: a.river, MaxAttempts: a.cfg.MaxAttempts, MessageIDDomain: a.cfg.MessageIDDomain},
			mailer.RightsPart{}, campaigns.RightsPart{}, tracking.RightsPart{})
		camps := &campaigns.Handler{DB: a.pool, River: a.river, Consent: a.consent, Logger: a.logger}
		auds := &campaigns.AudienceHandler{DB: a.pool, Logger: a.logger, MaxImportBytes: a.cfg.MaxImportBytes}
		hooks := &tracking.WebhookHandler{DB: a.pool, Keys: a.consent.Keys, Feedback: a.feedback, Logger: a.logger,
			BaseURL: a.cfg.BaseURL, SNS: &tracking.SNSVerifier{}}
		r.Route("/v1", func(r chi.Router) {
			r.Group(cons.SubscribeRoutes) // public: the double opt-in form posts here with its form key
			r.Group(func(r chi.Router) {
				r.Use((&workspace.Authenticator{DB: a.pool, TTL: a.cfg.KeyCacheTTL}).Middleware(a.logger))
				msgs.Routes(r)
				cts.Routes(r)
				tpls.Routes(r)
				cons.Routes(r)
				cons.PrivacyRoutes(r) // privacy requests, audit log, objections
				cons.RightsRoutes(r)  // export and erasure of a contact's data
				camps.Routes(r)
				auds.Routes(r)
				hooks.Routes(r) // feedback webhook settings (admin)
				(&consent.RetentionHandler{DB: a.pool, Defaults: retentionDefaults(a.cfg), Logger: a.logger}).Routes(r)
			})
		})
		cons.PageRoutes(r) // public: recipients' unsubscribe, preference and confirmation pages
		// public: the export confirmation link of the preference centre
		cons.RightsPageRoutes(r)
		// public: bounce and complaint webhooks, authenticated per provider
		hooks.HookRoutes(r)
		(&campaigns.ViewHandler{DB: a.pool, Consent: a.consent, Logger: a.logger, BaseURL: a.cfg.BaseURL, InboundDomain: a.cfg.InboundDomain}).Routes(r)
		// public: the open pixel and click redirect
		(&tracking.TrackHandler{Keys: a.consent.Keys, Links: a.links, Events: a.events, Logger: a.logger}).Routes(r)
	}
	if a.capture != nil {
		r.Handle("/dev/outbox", a.capture.OutboxHandler())
		r.Handle("/dev/outbox/*", a.capture.OutboxHandler())
	}
	return r
}

// recoverer turns a panic into a logged 500 problem instead of a dropped connection.
func (a *app) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				httpx.WriteError(w, r, a.logger, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
