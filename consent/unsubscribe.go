package consent

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// ErrContactGone is returned when a token names a contact that has been erased or deleted: there
// is nothing left to unsubscribe.
var ErrContactGone = errors.New("contact no longer exists")

// Channels of herald_unsubscribes_total: how a recipient withdrew.
const (
	ChannelOneClick         = "one_click"
	ChannelMailto           = "mailto"
	ChannelPreferenceCentre = "preference_centre"
	ChannelUnsubscribeAll   = "unsubscribe_all"
)

// ActorRecipient is the actor of the events a recipient makes through a link or a mail.
const ActorRecipient = "recipient"

// Unsubscribe withdraws the consent r names, on behalf of the recipient, in tx: the token's
// purpose, or all marketing (UnsubscribeAll) when it names none. A purpose already withdrawn is
// left alone, so a repeated unsubscribe records nothing and reports changed false. The contact row
// is locked before the state is read, which serialises concurrent unsubscribes of one contact: of
// two racing one-click POSTs, the second waits and then finds the withdrawal already made. Errors: one
// wrapping ErrContactGone for an erased contact, one wrapping ErrBadToken when the workspace or
// purpose named does not exist (a purpose id of another workspace included).
func (s *Service) Unsubscribe(ctx context.Context, tx pgx.Tx, r Recipient, channel string, ev Evidence) (changed bool, err error) {
	p, err := tokenPurpose(ctx, tx, r)
	if err != nil {
		return false, fmt.Errorf("unsubscribe: %w", err)
	}
	addr, err := contactAddress(ctx, tx, r.WorkspaceID, r.ContactID, true)
	if err != nil {
		return false, fmt.Errorf("unsubscribe: %w", err)
	}
	ev.Address = addr
	source := SourceOneClick
	if channel == ChannelPreferenceCentre || channel == ChannelUnsubscribeAll {
		source = SourcePreferenceCentre
	}
	if r.PurposeID == 0 {
		changed, err = s.unsubscribeAll(ctx, tx, r.WorkspaceID, r.ContactID, addr, source, ActorRecipient,
			map[string]string{"channel": channel, "scope": "all"}, ev)
		if err != nil {
			return false, fmt.Errorf("unsubscribe: %w", err)
		}
	} else {
		changed, err = s.withdrawOne(ctx, tx, r, p, source, channel, ev)
		if err != nil {
			return false, fmt.Errorf("unsubscribe: %w", err)
		}
	}
	if changed {
		s.Metrics.Unsubscribes.WithLabelValues(channel).Inc()
	}
	return changed, nil
}

func (s *Service) withdrawOne(ctx context.Context, tx pgx.Tx, r Recipient, p Purpose, source, channel string, ev Evidence) (bool, error) {
	if err := s.LockContacts(ctx, tx, r.WorkspaceID, r.ContactID); err != nil {
		return false, err
	}
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM consent_state
		WHERE workspace_id = $1 AND contact_id = $2 AND purpose = $3 FOR UPDATE`,
		r.WorkspaceID, r.ContactID, p.Name).Scan(&status)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("read state: %w", err)
	}
	if status == ActionWithdrawn {
		return false, nil
	}
	// With no state at all the withdrawal is still recorded: it is the recipient's explicit
	// objection, and the ledger should show it.
	err = s.Record(ctx, tx, &Event{WorkspaceID: r.WorkspaceID, ContactID: r.ContactID, Purpose: p.Name,
		Action: ActionWithdrawn, Source: source, LawfulBasis: BasisConsent, NoticeVersion: p.NoticeVersion,
		Actor: ActorRecipient, Proof: map[string]string{"channel": channel}, Evidence: &ev})
	return err == nil, err
}

// tokenPurpose returns the purpose a token names (the zero Purpose for none). A purpose id that is
// not the workspace's, or a workspace that does not exist, wraps ErrBadToken.
func tokenPurpose(ctx context.Context, q db.Querier, r Recipient) (Purpose, error) {
	if r.PurposeID == 0 {
		return Purpose{}, nil
	}
	p, err := PurposeByID(ctx, q, r.WorkspaceID, r.PurposeID)
	if errors.Is(err, db.ErrNotFound) {
		return p, fmt.Errorf("purpose %d is not the workspace's: %w", r.PurposeID, ErrBadToken)
	}
	return p, err
}

// UnsubscribeAll withdraws every grant the contact holds, and tracking wherever the contact is
// tracked without a grant (opt-out mode), and puts its address on the suppression list with
// reason unsubscribed_all, in tx. source and actor describe who asked (the preference
// centre's recipient, a complaint's feedback loop, ...). It counts nothing in
// herald_unsubscribes_total: callers count under their own channel. Errors as for Unsubscribe.
func (s *Service) UnsubscribeAll(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, source, actor string, ev Evidence) (changed bool, err error) {
	addr, err := contactAddress(ctx, tx, workspaceID, contactID, true)
	if err != nil {
		return false, fmt.Errorf("unsubscribe all: %w", err)
	}
	ev.Address = addr
	changed, err = s.unsubscribeAll(ctx, tx, workspaceID, contactID, addr, source, actor, map[string]string{"scope": "all"}, ev)
	if err != nil {
		return false, fmt.Errorf("unsubscribe all: %w", err)
	}
	return changed, nil
}

// unsubscribeAll does UnsubscribeAll for a contact whose row the caller has locked.
func (s *Service) unsubscribeAll(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, addr, source, actor string,
	proof map[string]string, ev Evidence) (bool, error) {
	states, err := lockStates(ctx, tx, s, workspaceID, contactID)
	if err != nil {
		return false, err
	}
	versions, err := noticeVersions(ctx, tx, workspaceID)
	if err != nil {
		return false, err
	}
	var events []*Event
	for _, st := range states {
		if st.Status != ActionGranted {
			continue // an expired grant is still a grant: withdrawing it too leaves nothing to revive
		}
		events = append(events, &Event{WorkspaceID: workspaceID, ContactID: contactID, Purpose: st.Purpose,
			Action: ActionWithdrawn, Source: source, LawfulBasis: BasisConsent, NoticeVersion: versions[st.Purpose],
			Actor: actor, Proof: proof, Evidence: &ev})
	}
	// Leaving all marketing stops open and click tracking too (preferences.go).
	te, err := s.trackingWithdrawal(ctx, tx, workspaceID, contactID, states, source, actor, proof, &ev)
	if err != nil {
		return false, err
	}
	if te != nil {
		events = append(events, te)
	}
	if err := s.RecordAll(ctx, tx, events); err != nil {
		return false, err
	}
	withdrawn := len(events)
	added, err := s.Suppress(ctx, tx, Suppression{WorkspaceID: workspaceID, Address: addr,
		Reason: ReasonUnsubscribedAll, Detail: source, Actor: actor})
	if err != nil {
		return false, err
	}
	return withdrawn > 0 || added, nil
}

// lockStates takes the contact's consent lock, then locks and returns every consent state row of
// the contact, in purpose order, so that what the caller decides from them still holds when it
// records (in one RecordAll, which takes the locks in the same order).
func lockStates(ctx context.Context, tx pgx.Tx, s *Service, workspaceID, contactID int64) ([]State, error) {
	if err := s.LockContacts(ctx, tx, workspaceID, contactID); err != nil {
		return nil, err
	}
	return s.states(ctx, tx, workspaceID, contactID, "FOR UPDATE")
}

// noticeVersions maps the workspace's purpose names to their current notice version.
func noticeVersions(ctx context.Context, q db.Querier, workspaceID int64) (map[string]int, error) {
	ps, err := Purposes(ctx, q, workspaceID)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int, len(ps))
	for _, p := range ps {
		m[p.Name] = p.NoticeVersion
	}
	return m, nil
}

// contactAddress returns the address of the workspace's contact, locking the contact row (FOR NO
// KEY UPDATE, which does not conflict with the key-share locks of sends referencing the contact)
// when lock is set. A missing workspace wraps ErrBadToken; a missing or emptied contact
// ErrContactGone.
func contactAddress(ctx context.Context, q db.Querier, workspaceID, contactID int64, lock bool) (string, error) {
	query := `SELECT email FROM contacts WHERE workspace_id = $1 AND id = $2`
	if lock {
		query += ` FOR NO KEY UPDATE`
	}
	var addr string
	err := q.QueryRow(ctx, query, workspaceID, contactID).Scan(&addr)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = $1)`, workspaceID).Scan(&exists); err != nil {
			return "", fmt.Errorf("look up workspace: %w", err)
		}
		if !exists {
			return "", fmt.Errorf("workspace %d does not exist: %w", workspaceID, ErrBadToken)
		}
		return "", ErrContactGone
	}
	if err != nil {
		return "", fmt.Errorf("look up contact: %w", err)
	}
	if addr == "" {
		return "", ErrContactGone
	}
	return addr, nil
}

// maxFormBytes limits the body of a POST to /u/{token}: a one-click body is 26 bytes, and the
// preference centre's form a few hundred.
const maxFormBytes = 64 << 10

func (h *Handler) unsubscribeRoutes(r chi.Router) {
	r.Get("/u/{token}", h.preferencesGet)
	r.Post("/u/{token}", h.unsubscribePost)
}

// unsubscribePost is both RFC 8058's one-click endpoint (List-Unsubscribe=One-Click in the body)
// and the preference centre's form (action=save or unsubscribe_all). It never redirects and never
// sets a cookie: a mailbox provider posting one-click follows neither.
func (h *Handler) unsubscribePost(w http.ResponseWriter, r *http.Request) {
	rcpt, err := h.Service.Keys.ParseToken(chi.URLParam(r, "token"))
	if err != nil {
		h.badLink(w)
		return
	}
	form, status, msg := readForm(w, r)
	if status != 0 {
		h.writeMessage(w, status, "Request refused", msg)
		return
	}
	// Checked before any action, so a token naming another workspace's purpose is refused
	// whatever the form asks.
	if _, err := tokenPurpose(r.Context(), h.DB, rcpt); h.pageError(w, r, err) {
		return
	}
	switch {
	case form.Get("List-Unsubscribe") == "One-Click":
		h.oneClick(w, r, rcpt)
	case form.Get("action") == "save":
		h.preferencesSave(w, r, rcpt, form["purpose"])
	case form.Get("action") == "unsubscribe_all":
		h.preferencesUnsubscribeAll(w, r, rcpt)
	case form.Get("action") == "export":
		h.exportRequest(w, r, rcpt) // rights_api.go
	default:
		h.writeMessage(w, http.StatusBadRequest, "Request refused",
			"Expected List-Unsubscribe=One-Click, or action=save or unsubscribe_all.")
	}
}

func (h *Handler) oneClick(w http.ResponseWriter, r *http.Request, rcpt Recipient) {
	ev := requestEvidence(r)
	err := pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		_, err := h.Service.Unsubscribe(r.Context(), tx, rcpt, ChannelOneClick, ev)
		return err
	})
	if h.pageError(w, r, err) {
		return
	}
	h.writeMessage(w, http.StatusOK, "Unsubscribed", "You have been unsubscribed. You will not receive these emails any more.")
}

// pageError writes the page for a failed recipient operation and reports whether err was one.
func (h *Handler) pageError(w http.ResponseWriter, r *http.Request, err error) bool {
	var fe *FieldError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrBadToken):
		h.badLink(w)
	case errors.Is(err, ErrContactGone):
		h.writeMessage(w, http.StatusOK, "Nothing to unsubscribe",
			"We hold no email address for this link any more, so there is nothing to unsubscribe.")
	case errors.As(err, &fe):
		h.writeMessage(w, http.StatusBadRequest, "Request refused", fe.Error())
	default:
		h.failed(w, r, err)
	}
	return true
}

func (h *Handler) badLink(w http.ResponseWriter) {
	h.writeMessage(w, http.StatusBadRequest, "Invalid link",
		"This link is not valid. Please use the link from the email exactly as you received it.")
}

func (h *Handler) failed(w http.ResponseWriter, r *http.Request, err error) {
	h.logger().ErrorContext(r.Context(), "recipient page failed", "method", r.Method, "err", err)
	h.writeMessage(w, http.StatusInternalServerError, "Something went wrong",
		"Your request could not be handled. Please try again in a few minutes.")
}

// readForm reads the POSTed form (urlencoded or multipart, at most maxFormBytes, no files) and
// rejects invalid UTF-8 and control characters. On failure status is the HTTP status to answer
// and msg a client-safe explanation.
func readForm(w http.ResponseWriter, r *http.Request) (form url.Values, status int, msg string) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var err error
	switch mt {
	case "application/x-www-form-urlencoded":
		err = r.ParseForm()
	case "multipart/form-data":
		err = r.ParseMultipartForm(maxFormBytes)
		if r.MultipartForm != nil {
			defer func() { _ = r.MultipartForm.RemoveAll() }()
			if err == nil && len(r.MultipartForm.File) > 0 {
				return nil, http.StatusBadRequest, "File uploads are not accepted."
			}
		}
	default:
		return nil, http.StatusUnsupportedMediaType, "Send a form: application/x-www-form-urlencoded or multipart/form-data."
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || errors.Is(err, multipart.ErrMessageTooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form exceeds %d bytes.", maxFormBytes)
	case err != nil:
		return nil, http.StatusBadRequest, "The form could not be read."
	}
	for k, vs := range r.PostForm {
		if !printable(k, 100) {
			return nil, http.StatusBadRequest, "The form holds invalid characters."
		}
		for _, v := range vs {
			if !printable(v, 200) {
				return nil, http.StatusBadRequest, "The form holds invalid characters."
			}
		}
	}
	return r.PostForm, 0, ""
}
