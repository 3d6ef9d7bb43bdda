package consent

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

//go:embed pages/*.html
var pageFiles embed.FS

// pages are the recipients' HTML pages; html/template escapes every value for its context.
var pages = template.Must(template.ParseFS(pageFiles, "pages/*.html"))

// setPageHeaders keeps a recipient's page from being framed, scripted, cached or leaking its URL
// (which holds the token) in a Referer.
func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

// SavePreferences makes the contact's grants exactly the purposes named in granted, in tx: each
// purpose whose live choice differs gets an event (granted or withdrawn, source
// preference_centre, the purpose's current notice version), and choosing any purpose lifts an
// unsubscribed_all suppression of the address. It returns the purposes changed. An unknown
// purpose name is a *FieldError and nothing is recorded; errors otherwise as for Unsubscribe.
func (s *Service) SavePreferences(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, granted []string, ev Evidence) (changed []string, err error) {
	addr, err := contactAddress(ctx, tx, workspaceID, contactID, true)
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	ev.Address = addr
	purposes, err := Purposes(ctx, tx, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	known := make(map[string]bool, len(purposes))
	for _, p := range purposes {
		known[p.Name] = true
	}
	want := map[string]bool{}
	for _, name := range granted {
		if !known[name] {
			return nil, fieldErr("purpose", fmt.Sprintf("unknown purpose %q", evidenceText(name, 64)))
		}
		want[name] = true
	}
	states, err := lockStates(ctx, tx, s, workspaceID, contactID)
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	live := map[string]bool{}
	for _, st := range states {
		live[st.Purpose] = st.Live
	}
	proof := map[string]string{"channel": ChannelPreferenceCentre}
	var events []*Event
	for _, p := range purposes {
		if want[p.Name] == live[p.Name] {
			continue
		}
		action := ActionWithdrawn
		if want[p.Name] {
			action = ActionGranted
		}
		events = append(events, &Event{WorkspaceID: workspaceID, ContactID: contactID, Purpose: p.Name,
			Action: action, Source: SourcePreferenceCentre, LawfulBasis: BasisConsent, NoticeVersion: p.NoticeVersion,
			Actor: ActorRecipient, Proof: proof, Evidence: &ev})
	}
	if err := s.RecordAll(ctx, tx, events); err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	for _, e := range events {
		changed = append(changed, e.Purpose)
		if e.Action == ActionWithdrawn {
			s.Metrics.Unsubscribes.WithLabelValues(ChannelPreferenceCentre).Inc()
		}
	}
	if len(want) > 0 {
		// Asking for any purpose undoes an earlier "unsubscribe from all", and only that: a
		// bounce or a complaint stays. This holds even when the grants were already live (an
		// unsubscribed_all entry added by other means), or the recipient would get nothing.
		_, err := s.Unsuppress(ctx, tx, workspaceID, addr, ReasonUnsubscribedAll)
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return nil, fmt.Errorf("save preferences: %w", err)
		}
	}
	return changed, nil
}

// preferencesView is what the preference centre shows.
type preferencesView struct {
	Workspace  string
	Address    string // masked
	PrivacyURL string
	Notice     string
	Purposes   []purposeChoice
}

type purposeChoice struct {
	Name, Title, Description string
	Checked                  bool
}

// loadPreferences reads the page of r's contact. Errors as for Unsubscribe.
func (h *Handler) loadPreferences(ctx context.Context, r Recipient) (preferencesView, error) {
	var v preferencesView
	if _, err := tokenPurpose(ctx, h.DB, r); err != nil {
		return v, err
	}
	addr, err := contactAddress(ctx, h.DB, r.WorkspaceID, r.ContactID, false)
	if err != nil {
		return v, err
	}
	if err := h.DB.QueryRow(ctx, `SELECT name FROM workspaces WHERE id = $1`, r.WorkspaceID).Scan(&v.Workspace); err != nil {
		return v, fmt.Errorf("load preferences: %w", err)
	}
	settings, err := SettingsGet(ctx, h.DB, r.WorkspaceID)
	if err != nil {
		return v, fmt.Errorf("load preferences: %w", err)
	}
	purposes, err := Purposes(ctx, h.DB, r.WorkspaceID)
	if err != nil {
		return v, fmt.Errorf("load preferences: %w", err)
	}
	states, err := h.Service.States(ctx, h.DB, r.WorkspaceID, r.ContactID)
	if err != nil {
		return v, fmt.Errorf("load preferences: %w", err)
	}
	live := map[string]bool{}
	for _, st := range states {
		live[st.Purpose] = st.Live
	}
	v.Address, v.PrivacyURL = maskAddress(addr), settings.PrivacyURL
	for _, p := range purposes {
		v.Purposes = append(v.Purposes, purposeChoice{Name: p.Name, Title: p.Title, Description: p.Description, Checked: live[p.Name]})
	}
	return v, nil
}

// preferencesGet shows the preference centre. It changes nothing: mail scanners open links.
func (h *Handler) preferencesGet(w http.ResponseWriter, r *http.Request) {
	rcpt, err := h.Service.Keys.ParseToken(chi.URLParam(r, "token"))
	if err != nil {
		h.badLink(w)
		return
	}
	h.showPreferences(w, r, rcpt, "")
}

func (h *Handler) showPreferences(w http.ResponseWriter, r *http.Request, rcpt Recipient, notice string) {
	v, err := h.loadPreferences(r.Context(), rcpt)
	if h.pageError(w, r, err) {
		return
	}
	v.Notice = notice
	h.render(w, http.StatusOK, "preferences", v)
}

func (h *Handler) preferencesSave(w http.ResponseWriter, r *http.Request, rcpt Recipient, granted []string) {
	ev := requestEvidence(r)
	err := pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		_, err := h.Service.SavePreferences(r.Context(), tx, rcpt.WorkspaceID, rcpt.ContactID, granted, ev)
		return err
	})
	if h.pageError(w, r, err) {
		return
	}
	h.showPreferences(w, r, rcpt, "Your choices have been saved.")
}

func (h *Handler) preferencesUnsubscribeAll(w http.ResponseWriter, r *http.Request, rcpt Recipient) {
	ev := requestEvidence(r)
	var changed bool
	err := pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		var err error
		changed, err = h.Service.UnsubscribeAll(r.Context(), tx, rcpt.WorkspaceID, rcpt.ContactID, SourcePreferenceCentre, ActorRecipient, ev)
		return err
	})
	if h.pageError(w, r, err) {
		return
	}
	if changed {
		h.Service.Metrics.Unsubscribes.WithLabelValues(ChannelUnsubscribeAll).Inc()
	}
	h.showPreferences(w, r, rcpt, "You have been unsubscribed from all marketing email.")
}

func (h *Handler) writeMessage(w http.ResponseWriter, status int, title, msg string) {
	h.render(w, status, "message", struct{ Title, Message string }{title, msg})
}

// render executes a page into a buffer first, so that a template error is a clean 500.
func (h *Handler) render(w http.ResponseWriter, status int, name string, data any) {
	setPageHeaders(w.Header())
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		h.logger().Error("render recipient page", "page", name, "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error\n"))
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// maskAddress shows enough of an address for its owner to recognise it: j***@example.com.
func maskAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "***"
	}
	local, domain := addr[:at], addr[at+1:]
	first := ""
	if r, n := utf8.DecodeRuneInString(local); r != utf8.RuneError && n > 0 {
		first = local[:n]
	}
	return first + "***@" + domain
}
