package consent

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"
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
// marketing purpose whose live choice differs gets an event (granted or withdrawn, source
// preference_centre, the purpose's current notice version), and choosing any marketing purpose
// lifts an unsubscribed_all suppression of the address. granted may also name TrackingPurpose:
// unless the workspace's tracking mode is off (then the tracking choice is not asked and is left
// as it is), the tracking purpose gets a granted or withdrawn event when the choice differs from
// what the contact is tracked under now (in opt-out mode a contact with no choice is tracked, so
// leaving the box ticked records nothing and unticking it records a withdrawal). It returns the
// purposes changed. An unknown purpose name is a *FieldError and nothing is recorded; errors
// otherwise as for Unsubscribe.
func (s *Service) SavePreferences(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, granted []string, ev Evidence) (changed []string, err error) {
	addr, err := contactAddress(ctx, tx, workspaceID, contactID, true)
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	ev.Address = addr
	purposes, err := MarketingPurposes(ctx, tx, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	policy, err := s.TrackingPolicies(ctx, tx, []int64{workspaceID})
	if err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	mode := policy[workspaceID].Mode
	var tracking Purpose
	if mode != TrackingOff {
		if tracking, err = EnsureTrackingPurpose(ctx, tx, workspaceID); errors.Is(err, ErrTrackingNameTaken) {
			mode = TrackingOff // the name belongs to a marketing purpose, which the loop below handles
		} else if err != nil {
			return nil, fmt.Errorf("save preferences: %w", err)
		}
	}
	known := make(map[string]bool, len(purposes))
	for _, p := range purposes {
		known[p.Name] = true
	}
	want := map[string]bool{}
	wantTracking := false
	for _, name := range granted {
		switch {
		case known[name]:
			want[name] = true
		case name == TrackingPurpose:
			wantTracking = true
		default:
			return nil, fieldErr("purpose", fmt.Sprintf("unknown purpose %q", evidenceText(name, 64)))
		}
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
	choose := func(p Purpose, grant bool) {
		action := ActionWithdrawn
		if grant {
			action = ActionGranted
		}
		events = append(events, &Event{WorkspaceID: workspaceID, ContactID: contactID, Purpose: p.Name,
			Action: action, Source: SourcePreferenceCentre, LawfulBasis: BasisConsent, NoticeVersion: p.NoticeVersion,
			Actor: ActorRecipient, Proof: proof, Evidence: &ev})
	}
	for _, p := range purposes {
		if want[p.Name] != live[p.Name] {
			choose(p, want[p.Name])
		}
	}
	if mode != TrackingOff && wantTracking != trackedUnder(mode, states, s.now()) {
		choose(tracking, wantTracking)
	}
	if err := s.RecordAll(ctx, tx, events); err != nil {
		return nil, fmt.Errorf("save preferences: %w", err)
	}
	for _, e := range events {
		changed = append(changed, e.Purpose)
		if e.Action == ActionWithdrawn && e.Purpose != TrackingPurpose {
			s.Metrics.Unsubscribes.WithLabelValues(ChannelPreferenceCentre).Inc()
		}
	}
	if len(want) > 0 {
		// Asking for any purpose undoes an earlier "unsubscribe from all", and only that: a
		// bounce or a complaint stays. This holds even when the grants were already live (an
		// unsubscribed_all entry added by other means), or the recipient would get nothing.
		// Allowing tracking alone is not asking for email, and lifts nothing.
		_, err := s.Unsuppress(ctx, tx, workspaceID, addr, ReasonUnsubscribedAll)
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return nil, fmt.Errorf("save preferences: %w", err)
		}
	}
	return changed, nil
}

// trackedUnder reports whether a contact with these states is tracked under mode at now, by the
// rule of TrackingAllowed: opt_in needs a live grant; opt_out tracks unless there is a
// withdrawal that has not expired (an expired grant still counts as a grant there); off never.
func trackedUnder(mode string, states []State, now time.Time) bool {
	i := slices.IndexFunc(states, func(st State) bool { return st.Purpose == TrackingPurpose })
	switch mode {
	case TrackingOptIn:
		return i >= 0 && states[i].Live
	case TrackingOptOut:
		if i < 0 {
			return true
		}
		st := states[i]
		return st.Status == ActionGranted || (st.ExpiresAt != nil && !st.ExpiresAt.After(now))
	default:
		return false
	}
}

// trackingWithdrawal is the event that stops tracking a contact, for unsubscribeAll: a
// privacy-minded recipient who leaves all marketing expects to be watched no more either. It is
// nil when the contact is not tracked by the mode alone (a granted tracking state is withdrawn by
// unsubscribeAll's loop over the grants, like any grant) or the workspace has no tracking purpose
// it could record (a marketing purpose holds the name).
func (s *Service) trackingWithdrawal(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, states []State,
	source, actor string, proof map[string]string, ev *Evidence) (*Event, error) {
	policy, err := s.TrackingPolicies(ctx, tx, []int64{workspaceID})
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(states, func(st State) bool { return st.Purpose == TrackingPurpose })
	if i >= 0 && states[i].Status == ActionGranted {
		return nil, nil // the loop over the grants withdraws it
	}
	if !trackedUnder(policy[workspaceID].Mode, states, s.now()) {
		return nil, nil
	}
	p, err := EnsureTrackingPurpose(ctx, tx, workspaceID)
	if errors.Is(err, ErrTrackingNameTaken) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Event{WorkspaceID: workspaceID, ContactID: contactID, Purpose: p.Name, Action: ActionWithdrawn,
		Source: source, LawfulBasis: BasisConsent, NoticeVersion: p.NoticeVersion, Actor: actor, Proof: proof,
		Evidence: ev}, nil
}

// preferencesView is what the preference centre shows.
type preferencesView struct {
	Workspace  string
	Address    string // masked
	PrivacyURL string
	Notice     string
	Purposes   []purposeChoice
	// Tracking is the open and click tracking choice, nil when the workspace does not track.
	Tracking *trackingChoice
	// TrackingOff says the workspace uses no tracking at all (mode off).
	TrackingOff bool
}

type purposeChoice struct {
	Name, Title, Description string
	Checked                  bool
}

// trackingChoice is the tracking purpose's box: its title, its notice in full, and whether the
// contact is tracked now.
type trackingChoice struct {
	Title, Notice string
	Checked       bool
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
	purposes, err := MarketingPurposes(ctx, h.DB, r.WorkspaceID)
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
	v.TrackingOff = settings.TrackingMode == TrackingOff
	if !v.TrackingOff {
		tp, err := EnsureTrackingPurpose(ctx, h.DB, r.WorkspaceID)
		switch {
		case errors.Is(err, ErrTrackingNameTaken):
			h.logger().WarnContext(ctx, "preference centre without a tracking choice", "workspace_id", r.WorkspaceID, "err", err)
		case err != nil:
			return v, fmt.Errorf("load preferences: %w", err)
		default:
			v.Tracking = &trackingChoice{Title: tp.Title, Notice: tp.Notice,
				Checked: trackedUnder(settings.TrackingMode, states, h.Service.now())}
		}
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
