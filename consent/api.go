package consent

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Routes mounts the authenticated consent API on r, which must already run the workspace
// authenticator: purposes (read by any key, written with campaigns:write), a contact's consents
// and the suppression list (contacts:write), and the admin-only removal of suppressions and
// consent settings.
func (h *Handler) Routes(r chi.Router) {
	log := h.logger()
	r.Get("/purposes", httpx.Handler(log, h.purposeList))
	r.Get("/purposes/{name}", httpx.Handler(log, h.purposeGet))
	r.With(workspace.Require(log, workspace.ScopeCampaignsWrite)).Post("/purposes", httpx.Handler(log, h.purposePost))
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeContactsWrite))
		r.Post("/contacts/{external_id}/consents", httpx.Handler(log, h.consentPost))
		r.Get("/contacts/{external_id}/consents", httpx.Handler(log, h.consentGet))
		r.Get("/suppressions", httpx.Handler(log, h.suppressionList))
		r.Post("/suppressions", httpx.Handler(log, h.suppressionPost))
		r.Get("/suppressions/{address}", httpx.Handler(log, h.suppressionGet))
	})
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopeAdmin))
		r.Delete("/suppressions/{address}", httpx.Handler(log, h.suppressionDelete))
		r.Get("/consent/settings", httpx.Handler(log, h.settingsGet))
		r.Put("/consent/settings", httpx.Handler(log, h.settingsPut))
	})
}

// actor names the API key a request acts as, in ledger events, suppressions and the audit log.
func actor(p workspace.Principal) string { return "api_key:" + strconv.FormatInt(p.KeyID, 10) }

// problem turns a consent validation error into a 422 naming the field; other errors pass.
func problem(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return httpx.Invalid(fe.Field, fe.Detail)
	}
	return err
}

// inTx runs fn in a transaction of h.DB, committed only when fn returns nil.
func (h *Handler) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return problem(pgx.BeginFunc(ctx, h.DB, fn))
}

func (h *Handler) purposeList(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	list, err := Purposes(r.Context(), h.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"purposes": orEmptySlice(list)})
	return nil
}

func (h *Handler) purposeGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	name := chi.URLParam(r, "name")
	if name == TrackingPurpose {
		if err := h.ensureTracking(r.Context(), h.DB, p.WorkspaceID); err != nil {
			return err
		}
	}
	pu, err := PurposeGet(r.Context(), h.DB, p.WorkspaceID, name)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no purpose with this name")
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, pu)
	return nil
}

type purposeBody struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Notice      string `json:"notice"`
}

func (h *Handler) purposePost(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	var body purposeBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	var saved Purpose
	var created bool
	err := h.inTx(r.Context(), func(tx pgx.Tx) error {
		var err error
		saved, created, err = PurposeSave(r.Context(), tx, Purpose{WorkspaceID: p.WorkspaceID, Name: body.Name,
			Kind: body.Kind, Title: body.Title, Description: body.Description, Notice: body.Notice})
		return err
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/purposes/"+saved.Name)
	}
	h.logger().InfoContext(r.Context(), "purpose saved", "workspace_id", p.WorkspaceID, "purpose", saved.Name,
		"notice_version", saved.NoticeVersion, "created", created)
	httpx.WriteJSON(w, status, saved)
	return nil
}

// consentBody is one consent event as the CRM reports it. Times are strings so that a malformed
// one is a 422 naming its field rather than a generic JSON error.
type consentBody struct {
	Purpose       string            `json:"purpose"`
	Action        string            `json:"action"`
	Source        string            `json:"source"`
	LawfulBasis   string            `json:"lawful_basis"`
	NoticeVersion *int              `json:"notice_version"`
	OccurredAt    string            `json:"occurred_at"`
	ExpiresAt     string            `json:"expires_at"`
	IP            string            `json:"ip"`
	UserAgent     string            `json:"user_agent"`
	Proof         map[string]string `json:"proof"`
}

// event checks the parts of b that need no database and returns the event to record.
func (b consentBody) event(p workspace.Principal) (*Event, error) {
	e := &Event{WorkspaceID: p.WorkspaceID, Purpose: b.Purpose, Action: b.Action, Source: b.Source,
		LawfulBasis: b.LawfulBasis, Actor: actor(p), Proof: b.Proof}
	if e.Source == "" {
		e.Source = SourceAPI
	}
	if e.LawfulBasis == "" {
		e.LawfulBasis = BasisConsent
	}
	switch {
	case b.Purpose == "":
		return nil, httpx.Invalid("purpose", "is required")
	case !PurposeNameRE.MatchString(b.Purpose):
		return nil, httpx.Invalid("purpose", "no such purpose")
	case e.Action != ActionGranted && e.Action != ActionWithdrawn:
		return nil, httpx.Invalid("action", "must be granted or withdrawn")
	case !slices.Contains(Sources, e.Source):
		return nil, httpx.Invalid("source", "must be one of "+strings.Join(Sources, ", "))
	case e.Source == SourceAdmin && !p.Has(workspace.ScopeAdmin):
		return nil, httpx.NewProblem(http.StatusForbidden, "source admin needs an API key with the admin scope")
	case b.NoticeVersion != nil && *b.NoticeVersion < 0:
		return nil, httpx.Invalid("notice_version", "must not be negative")
	case b.NoticeVersion == nil && e.Action == ActionGranted && e.LawfulBasis == BasisConsent:
		return nil, httpx.Invalid("notice_version", "is required for a grant on the basis of consent")
	case b.IP != "" && !validIP(b.IP):
		return nil, httpx.Invalid("ip", "must be an IPv4 or IPv6 address")
	case !printable(b.UserAgent, 1000):
		return nil, httpx.Invalid("user_agent", "must be at most 1000 printable characters")
	}
	if b.NoticeVersion != nil {
		e.NoticeVersion = *b.NoticeVersion
	}
	var err error
	if b.OccurredAt != "" {
		if e.OccurredAt, err = time.Parse(time.RFC3339Nano, b.OccurredAt); err != nil {
			return nil, httpx.Invalid("occurred_at", "must be an RFC 3339 time")
		}
	}
	if b.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, b.ExpiresAt)
		if err != nil {
			return nil, httpx.Invalid("expires_at", "must be an RFC 3339 time")
		}
		e.ExpiresAt = &t
	}
	e.Evidence = &Evidence{IP: b.IP, UserAgent: b.UserAgent}
	return e, nil
}

func validIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == "" // a zone is free text
}

// consentPost records one consent event for the contact, in one transaction with the check of
// its purpose and notice version and, for source admin, the audit entry.
func (h *Handler) consentPost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var body consentBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	e, err := body.event(p)
	if err != nil {
		return err
	}
	var state State
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		c, err := contacts.Get(ctx, tx, p.WorkspaceID, extID)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.NotFound("no contact with this external_id")
		}
		if err != nil {
			return err
		}
		e.ContactID = c.ID
		e.Evidence.Address = c.Email
		if e.Purpose == TrackingPurpose {
			if err := h.ensureTracking(ctx, tx, p.WorkspaceID); err != nil {
				return err
			}
		}
		pu, err := PurposeGet(ctx, tx, p.WorkspaceID, e.Purpose)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.Invalid("purpose", "no such purpose")
		}
		if err != nil {
			return err
		}
		if e.NoticeVersion != 0 {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM purpose_notices WHERE purpose_id = $1 AND version = $2)`,
				pu.ID, e.NoticeVersion).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return httpx.Invalid("notice_version", "no such notice version for this purpose")
			}
		}
		if err := h.Service.Record(ctx, tx, e); err != nil {
			return err
		}
		if e.Source == SourceAdmin {
			err := AuditWrite(ctx, tx, Audit{WorkspaceID: p.WorkspaceID, Actor: e.Actor, Action: "consent.record_admin",
				Target: "contact:" + strconv.FormatInt(c.ID, 10),
				Detail: map[string]any{"event_id": e.ID, "seq": e.Seq, "purpose": e.Purpose, "action": e.Action}})
			if err != nil {
				return err
			}
		}
		states, err := h.Service.States(ctx, tx, p.WorkspaceID, c.ID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(states, func(s State) bool { return s.Purpose == e.Purpose })
		if i < 0 {
			return errors.New("record consent: state missing after recording")
		}
		state = states[i]
		return nil
	})
	if err != nil {
		return err
	}
	h.logger().InfoContext(ctx, "consent recorded", "workspace_id", p.WorkspaceID, "contact_id", e.ContactID,
		"event_id", e.ID, "seq", e.Seq, "purpose", e.Purpose, "action", e.Action, "source", e.Source)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{"event": eventOut(e), "state": state})
	return nil
}

func (h *Handler) consentGet(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var states []State
	var history []Event
	// One repeatable-read snapshot, so the state always matches the history beside it.
	err = pgx.BeginTxFunc(ctx, h.DB, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		c, err := contacts.Get(ctx, tx, p.WorkspaceID, extID)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.NotFound("no contact with this external_id")
		}
		if err != nil {
			return err
		}
		if states, err = h.Service.States(ctx, tx, p.WorkspaceID, c.ID); err != nil {
			return err
		}
		history, err = h.Service.History(ctx, tx, p.WorkspaceID, c.ID)
		return err
	})
	if err != nil {
		return err
	}
	out := make([]eventJSON, len(history))
	for i := range history {
		out[i] = eventOut(&history[i])
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"state": orEmptySlice(states), "history": out})
	return nil
}

// eventJSON is a ledger event as the API shows it; hashes are hex, evidence is null once erased.
type eventJSON struct {
	ID                 int64             `json:"id"`
	Seq                int64             `json:"seq"`
	Purpose            string            `json:"purpose"`
	Action             string            `json:"action"`
	Source             string            `json:"source"`
	LawfulBasis        string            `json:"lawful_basis"`
	NoticeVersion      int               `json:"notice_version"`
	Actor              string            `json:"actor"`
	Proof              map[string]string `json:"proof"`
	OccurredAt         time.Time         `json:"occurred_at"`
	RecordedAt         time.Time         `json:"recorded_at"`
	ExpiresAt          *time.Time        `json:"expires_at,omitempty"`
	Evidence           *Evidence         `json:"evidence"`
	EvidenceCommitment string            `json:"evidence_commitment"`
	PrevHash           string            `json:"prev_hash"`
	Hash               string            `json:"hash"`
}

func eventOut(e *Event) eventJSON {
	return eventJSON{ID: e.ID, Seq: e.Seq, Purpose: e.Purpose, Action: e.Action, Source: e.Source,
		LawfulBasis: e.LawfulBasis, NoticeVersion: e.NoticeVersion, Actor: e.Actor, Proof: orEmpty(e.Proof),
		OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt, ExpiresAt: e.ExpiresAt, Evidence: e.Evidence,
		EvidenceCommitment: hex.EncodeToString(e.EvidenceCommitment), PrevHash: hex.EncodeToString(e.PrevHash),
		Hash: hex.EncodeToString(e.Hash)}
}

func orEmptySlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// pathAddress returns the normalised address of the {address} path segment, or a 422.
func pathAddress(r *http.Request) (string, error) {
	s := chi.URLParam(r, "address")
	if r.URL.RawPath != "" {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return "", httpx.Invalid("address", "is not a valid URL path segment")
		}
		s = dec
	}
	addr, err := contacts.NormalizeAddress(s)
	if err != nil {
		return "", httpx.Invalid("address", err.Error())
	}
	return addr, nil
}

// settingsJSON is the consent settings as the API shows and takes them. On PUT the pointer
// fields may be omitted (their defaults are stored); soft_bounce_window is a Go duration string.
type settingsJSON struct {
	FormKey          string `json:"form_key"`
	PrivacyURL       string `json:"privacy_url"`
	ConfirmFrom      string `json:"confirm_from"`
	TrackingMode     string `json:"tracking_mode"`
	TrackingFullIP   bool   `json:"tracking_full_ip"`
	SoftBounceLimit  int    `json:"soft_bounce_limit"`
	SoftBounceWindow string `json:"soft_bounce_window"`
}

func settingsOut(s Settings) settingsJSON {
	return settingsJSON{FormKey: s.FormKey, PrivacyURL: s.PrivacyURL, ConfirmFrom: s.ConfirmFrom,
		TrackingMode: s.TrackingMode, TrackingFullIP: s.TrackingFullIP, SoftBounceLimit: s.SoftBounceLimit,
		SoftBounceWindow: FormatWindow(s.SoftBounceWindow)}
}

// settingsGet shows the workspace's settings, creating them and the tracking purpose on first
// use (so the tracking purpose is there to edit once tracking settings are looked at).
func (h *Handler) settingsGet(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var s Settings
	err := h.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		if s, err = SettingsGet(ctx, tx, p.WorkspaceID); err != nil {
			return err
		}
		return h.ensureTracking(ctx, tx, p.WorkspaceID)
	})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, settingsOut(s))
	return nil
}

// ensureTracking creates the workspace's tracking purpose if missing. A marketing purpose that
// holds its name is logged, not fatal: the settings still work, and the purposes API says why.
func (h *Handler) ensureTracking(ctx context.Context, q db.Querier, workspaceID int64) error {
	_, err := EnsureTrackingPurpose(ctx, q, workspaceID)
	if errors.Is(err, ErrTrackingNameTaken) {
		h.logger().WarnContext(ctx, "tracking purpose not created", "workspace_id", workspaceID, "err", err)
		return nil
	}
	return err
}

type settingsBody struct {
	PrivacyURL       string  `json:"privacy_url"`
	ConfirmFrom      string  `json:"confirm_from"`
	TrackingMode     *string `json:"tracking_mode"`
	TrackingFullIP   *bool   `json:"tracking_full_ip"`
	SoftBounceLimit  *int    `json:"soft_bounce_limit"`
	SoftBounceWindow *string `json:"soft_bounce_window"`
}

// settings checks the fields that need no database; an omitted one is its default.
func (b settingsBody) settings(workspaceID int64) (Settings, error) {
	s := Settings{WorkspaceID: workspaceID, PrivacyURL: b.PrivacyURL, ConfirmFrom: b.ConfirmFrom,
		TrackingMode: TrackingOptIn, SoftBounceLimit: DefaultSoftBounceLimit, SoftBounceWindow: DefaultSoftBounceWindow}
	if b.TrackingMode != nil {
		if m := *b.TrackingMode; m != TrackingOptIn && m != TrackingOptOut && m != TrackingOff {
			return s, httpx.Invalid("tracking_mode", "must be opt_in, opt_out or off")
		}
		s.TrackingMode = *b.TrackingMode
	}
	if b.TrackingFullIP != nil {
		s.TrackingFullIP = *b.TrackingFullIP
	}
	if b.SoftBounceLimit != nil {
		if n := *b.SoftBounceLimit; n < 1 || n > MaxSoftBounceLimit {
			return s, httpx.Invalid("soft_bounce_limit", "must be a whole number from 1 to "+strconv.Itoa(MaxSoftBounceLimit))
		}
		s.SoftBounceLimit = *b.SoftBounceLimit
	}
	if b.SoftBounceWindow != nil {
		d, err := ParseWindow(*b.SoftBounceWindow)
		if err != nil {
			return s, problem(err)
		}
		s.SoftBounceWindow = d
	}
	return s, nil
}

// settingsPut replaces the workspace's settings (an omitted text field becomes empty, an omitted
// tracking or soft bounce field its default) and audits the change with the values before and
// after.
func (h *Handler) settingsPut(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var body settingsBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	in, err := body.settings(p.WorkspaceID)
	if err != nil {
		return err
	}
	var s Settings
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		before, err := SettingsGet(ctx, tx, p.WorkspaceID)
		if err != nil {
			return err
		}
		if s, err = SettingsPut(ctx, tx, in); err != nil {
			return err
		}
		if err := h.ensureTracking(ctx, tx, p.WorkspaceID); err != nil {
			return err
		}
		return AuditWrite(ctx, tx, Audit{WorkspaceID: p.WorkspaceID, Actor: actor(p), Action: "consent_settings.put",
			Target: "workspace:" + strconv.FormatInt(p.WorkspaceID, 10),
			Detail: map[string]any{"privacy_url": s.PrivacyURL, "confirm_from": s.ConfirmFrom,
				"tracking_mode": s.TrackingMode, "tracking_full_ip": s.TrackingFullIP,
				"soft_bounce_limit": s.SoftBounceLimit, "soft_bounce_window": FormatWindow(s.SoftBounceWindow),
				"before": settingsOut(before)}})
	})
	if err != nil {
		return err
	}
	h.logger().InfoContext(ctx, "consent settings saved", "workspace_id", p.WorkspaceID, "tracking_mode", s.TrackingMode)
	httpx.WriteJSON(w, http.StatusOK, settingsOut(s))
	return nil
}

// suppressionJSON is a suppression list entry as the API shows it. Address is empty once erased;
// address_hash (hex) is what the audit log names.
type suppressionJSON struct {
	Address     string    `json:"address"`
	AddressHash string    `json:"address_hash"`
	Reason      string    `json:"reason"`
	Detail      string    `json:"detail"`
	MessageID   *string   `json:"message_id,omitempty"`
	Actor       string    `json:"actor"`
	CreatedAt   time.Time `json:"created_at"`
}

func suppressionOut(sp Suppression) suppressionJSON {
	return suppressionJSON{Address: sp.Address, AddressHash: hex.EncodeToString(sp.AddressHash), Reason: sp.Reason,
		Detail: sp.Detail, MessageID: sp.MessageID, Actor: sp.Actor, CreatedAt: sp.CreatedAt}
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
	addressHashLen  = 32 // HMAC-SHA256
)

// A suppression cursor is the last entry's position in the order (created_at DESC, address_hash):
// its created_at in Unix microseconds (the column's precision) and its address hash, base64url.
func encodeCursor(sp Suppression) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(sp.CreatedAt.UnixMicro()))
	return base64.RawURLEncoding.EncodeToString(append(b, sp.AddressHash...))
}

func decodeCursor(s string) (time.Time, []byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 8+addressHashLen {
		return time.Time{}, nil, httpx.Invalid("cursor", "is not a cursor this API returned")
	}
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b))), b[8:], nil
}

// suppressionList pages through the workspace's suppression list, newest first, by keyset on
// the index (workspace_id, created_at DESC, address_hash).
func (h *Handler) suppressionList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	q := r.URL.Query()
	reason := q.Get("reason")
	if reason != "" && !slices.Contains(Reasons, reason) {
		return httpx.Invalid("reason", "must be one of "+strings.Join(Reasons, ", "))
	}
	limit := defaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return httpx.Invalid("limit", "must be a whole number from 1 to "+strconv.Itoa(maxPageSize))
		}
		limit = n
	}
	var after *time.Time
	var afterHash []byte
	if s := q.Get("cursor"); s != "" {
		t, hash, err := decodeCursor(s)
		if err != nil {
			return err
		}
		after, afterHash = &t, hash
	}
	rows, err := h.DB.Query(ctx, `SELECT `+suppressionColumns+` FROM suppressions
		WHERE workspace_id = $1 AND ($2 = '' OR reason = $2)
			AND ($3::timestamptz IS NULL OR created_at < $3 OR (created_at = $3 AND address_hash > $4))
		ORDER BY created_at DESC, address_hash LIMIT $5`, p.WorkspaceID, reason, after, afterHash, limit+1)
	if err != nil {
		return err
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Suppression, error) { return scanSuppression(r) })
	if err != nil {
		return err
	}
	out := map[string]any{}
	if len(list) > limit {
		list = list[:limit]
		out["next_cursor"] = encodeCursor(list[limit-1])
	}
	entries := make([]suppressionJSON, len(list))
	for i, sp := range list {
		entries[i] = suppressionOut(sp)
	}
	out["suppressions"] = entries
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

type suppressionBody struct {
	Address string `json:"address"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

// suppressionPost adds an address to the list by hand. Only reason manual is accepted: the other
// reasons are facts Herald records itself (bounces, complaints, unsubscribes, erasure). An address
// already listed keeps its entry, answered with 200.
func (h *Handler) suppressionPost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var body suppressionBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	if body.Address == "" {
		return httpx.Invalid("address", "is required")
	}
	addr, err := contacts.NormalizeAddress(body.Address)
	if err != nil {
		return httpx.Invalid("address", err.Error())
	}
	if body.Reason == "" {
		body.Reason = ReasonManual
	}
	if body.Reason != ReasonManual {
		return httpx.Invalid("reason", "only manual entries can be added through the API")
	}
	if !printable(body.Detail, 500) {
		return httpx.Invalid("detail", "must be at most 500 printable characters")
	}
	added, err := h.Service.Suppress(ctx, h.DB, Suppression{WorkspaceID: p.WorkspaceID, Address: addr,
		Reason: ReasonManual, Detail: body.Detail, Actor: actor(p)})
	if err != nil {
		return err
	}
	sp, err := h.Service.SuppressionGet(ctx, h.DB, p.WorkspaceID, addr)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if added {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/suppressions/"+url.PathEscape(addr))
	}
	h.logger().InfoContext(ctx, "suppression added", "workspace_id", p.WorkspaceID,
		"address_hash", hex.EncodeToString(sp.AddressHash), "added", added)
	httpx.WriteJSON(w, status, suppressionOut(sp))
	return nil
}

func (h *Handler) suppressionGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	addr, err := pathAddress(r)
	if err != nil {
		return err
	}
	sp, err := h.Service.SuppressionGet(r.Context(), h.DB, p.WorkspaceID, addr)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("this address is not on the suppression list")
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, suppressionOut(sp))
	return nil
}

// suppressionDelete removes an entry and audits the removal under the address's keyed hash. An
// erasure entry is what keeps an erased person from being mailed again, so it is never removed.
func (h *Handler) suppressionDelete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	addr, err := pathAddress(r)
	if err != nil {
		return err
	}
	removable := slices.DeleteFunc(slices.Clone(Reasons), func(s string) bool { return s == ReasonErased })
	var removed Suppression
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		removed, err = h.Service.Unsuppress(ctx, tx, p.WorkspaceID, addr, removable...)
		if errors.Is(err, db.ErrNotFound) {
			sp, gerr := h.Service.SuppressionGet(ctx, tx, p.WorkspaceID, addr)
			if gerr == nil && sp.Reason == ReasonErased {
				return httpx.NewProblem(http.StatusConflict,
					"this address was erased at the person's request; its suppression cannot be removed")
			}
			return httpx.NotFound("this address is not on the suppression list")
		}
		if err != nil {
			return err
		}
		return AuditWrite(ctx, tx, Audit{WorkspaceID: p.WorkspaceID, Actor: actor(p), Action: "suppression.delete",
			Target: hex.EncodeToString(removed.AddressHash),
			Detail: map[string]any{"reason": removed.Reason, "created_at": removed.CreatedAt}})
	})
	if err != nil {
		return err
	}
	h.logger().InfoContext(ctx, "suppression removed", "workspace_id", p.WorkspaceID,
		"address_hash", hex.EncodeToString(removed.AddressHash), "reason", removed.Reason)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
