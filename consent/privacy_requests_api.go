package consent

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
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

// PrivacyRoutes mounts the data-subject request API on r, which must already run the workspace
// authenticator: the privacy requests (scope privacy, which admin includes), the audit log
// (admin), and a contact's objection to direct marketing and restriction of processing
// (contacts:write).
func (h *Handler) PrivacyRoutes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopePrivacy))
		r.Post("/privacy-requests", httpx.Handler(log, h.privacyRequestPost))
		r.Get("/privacy-requests", httpx.Handler(log, h.privacyRequestList))
		r.Get("/privacy-requests/{id}", httpx.Handler(log, h.privacyRequestGet))
		r.Patch("/privacy-requests/{id}", httpx.Handler(log, h.privacyRequestPatch))
	})
	r.With(workspace.Require(log, workspace.ScopeAdmin)).Get("/audit", httpx.Handler(log, h.auditList))
	r.With(workspace.Require(log, workspace.ScopeContactsWrite)).Post("/contacts/{external_id}/object", httpx.Handler(log, h.objectPost))
	r.With(workspace.Require(log, workspace.ScopeContactsWrite)).Post("/contacts/{external_id}/restrict", httpx.Handler(log, h.restrictPost))
	r.With(workspace.Require(log, workspace.ScopeContactsWrite)).Delete("/contacts/{external_id}/restrict", httpx.Handler(log, h.restrictDelete))
}

// privacyRequestJSON is a request as the API shows it; contact is the contact's external id.
type privacyRequestJSON struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"`
	Status      string     `json:"status"`
	Channel     string     `json:"channel"`
	Contact     *string    `json:"contact"`
	ReceivedAt  time.Time  `json:"received_at"`
	DueAt       time.Time  `json:"due_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Overdue     bool       `json:"overdue"`
	HandledBy   string     `json:"handled_by"`
	Note        string     `json:"note"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func privacyRequestOut(r PrivacyRequest, now time.Time) privacyRequestJSON {
	out := privacyRequestJSON{ID: r.ID, Kind: r.Kind, Status: r.Status, Channel: r.Channel, ReceivedAt: r.ReceivedAt,
		DueAt: r.DueAt, CompletedAt: r.CompletedAt, Overdue: r.Overdue(now), HandledBy: r.HandledBy, Note: r.Note,
		UpdatedAt: r.UpdatedAt}
	if r.ContactExternalID != "" {
		out.Contact = &r.ContactExternalID
	}
	return out
}

// privacyRequestBody records a request. contact (the external id) is optional: a person Herald
// holds nothing on may still ask. received_at defaults to now.
type privacyRequestBody struct {
	Kind       string `json:"kind"`
	Contact    string `json:"contact"`
	Channel    string `json:"channel"`
	Note       string `json:"note"`
	ReceivedAt string `json:"received_at"`
}

func (h *Handler) privacyRequestPost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	var body privacyRequestBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	req := PrivacyRequest{WorkspaceID: p.WorkspaceID, Kind: body.Kind, Channel: cmpOr(body.Channel, RequestChannelAPI), Note: body.Note}
	if body.Kind == "" {
		return httpx.Invalid("kind", "is required")
	}
	if body.ReceivedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, body.ReceivedAt)
		if err != nil {
			return httpx.Invalid("received_at", "must be an RFC 3339 time")
		}
		req.ReceivedAt = t
	}
	var saved PrivacyRequest
	err := h.inTx(ctx, func(tx pgx.Tx) error {
		if body.Contact != "" {
			c, err := contacts.Get(ctx, tx, p.WorkspaceID, body.Contact)
			if errors.Is(err, db.ErrNotFound) {
				return httpx.Invalid("contact", "no contact with this external_id")
			}
			if err != nil {
				return err
			}
			req.ContactID, req.ContactExternalID = &c.ID, c.ExternalID
		}
		var err error
		saved, err = h.Service.RecordPrivacyRequest(ctx, tx, req, p.Actor())
		return err
	})
	if err != nil {
		return err
	}
	saved.ContactExternalID = req.ContactExternalID
	h.logger().InfoContext(ctx, "privacy request recorded", "workspace_id", p.WorkspaceID, "request_id", saved.ID,
		"kind", saved.Kind, "due_at", saved.DueAt)
	w.Header().Set("Location", "/v1/privacy-requests/"+strconv.FormatInt(saved.ID, 10))
	httpx.WriteJSON(w, http.StatusCreated, privacyRequestOut(saved, h.Service.now()))
	return nil
}

// requestIDParam returns the {id} path segment as a request id, or a 422.
func requestIDParam(r *http.Request) (int64, error) {
	s := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != s {
		return 0, httpx.Invalid("id", "must be a privacy request id (a positive whole number)")
	}
	return id, nil
}

func (h *Handler) privacyRequestGet(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id, err := requestIDParam(r)
	if err != nil {
		return err
	}
	req, err := PrivacyRequestGet(r.Context(), h.DB, p.WorkspaceID, id)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no privacy request with this id")
	}
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, privacyRequestOut(req, h.Service.now()))
	return nil
}

// privacyRequestPatchBody changes a request's status or note; an omitted member is unchanged.
type privacyRequestPatchBody struct {
	Status *string `json:"status"`
	Note   *string `json:"note"`
}

func (h *Handler) privacyRequestPatch(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	id, err := requestIDParam(r)
	if err != nil {
		return err
	}
	var body privacyRequestPatchBody
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	if body.Status == nil && body.Note == nil {
		return httpx.Invalid("status", "give a status, a note or both")
	}
	var saved PrivacyRequest
	var changed bool
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		saved, changed, err = h.Service.UpdatePrivacyRequest(ctx, tx, p.WorkspaceID, id,
			RequestUpdate{Status: body.Status, Note: body.Note}, p.Actor())
		switch {
		case errors.Is(err, db.ErrNotFound):
			return httpx.NotFound("no privacy request with this id")
		case errors.Is(err, ErrRequestFinal):
			return httpx.NewProblem(http.StatusConflict, "this request is "+saved.Status+"; a closed request cannot change")
		}
		return err
	})
	if err != nil {
		return err
	}
	if changed {
		h.logger().InfoContext(ctx, "privacy request updated", "workspace_id", p.WorkspaceID, "request_id", id,
			"status", saved.Status)
	}
	httpx.WriteJSON(w, http.StatusOK, privacyRequestOut(saved, h.Service.now()))
	return nil
}

// The list's order: open requests past their due date first, then the other open ones, both by
// due date (soonest first), then the closed ones, latest due date first; id breaks ties. Each row's
// place is (rank, key, id), with key the due date in Unix microseconds, negated for closed ones.
const (
	requestRankExpr = `CASE WHEN r.status IN ('received', 'in_progress') THEN
		CASE WHEN r.due_at < $2 THEN 0 ELSE 1 END ELSE 2 END`
	requestKeyExpr = `(CASE WHEN r.status IN ('received', 'in_progress') THEN 1 ELSE -1 END) *
		(extract(epoch FROM r.due_at) * 1000000)::bigint`
)

// requestCursor is a list position: the time the first page was read at (so that a request
// falling overdue while a client pages does not move between pages) and the last row's place.
type requestCursor struct {
	now  time.Time
	rank int
	key  int64
	id   int64
}

const requestCursorLen = 8 + 1 + 8 + 8

func (c requestCursor) encode() string {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.now.UnixMicro()))
	b = append(b, byte(c.rank))
	b = binary.BigEndian.AppendUint64(b, uint64(c.key))
	b = binary.BigEndian.AppendUint64(b, uint64(c.id))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeRequestCursor(s string) (requestCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != requestCursorLen || b[8] > 2 {
		return requestCursor{}, httpx.Invalid("cursor", "is not a cursor this API returned")
	}
	return requestCursor{now: time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC(), rank: int(b[8]),
		key: int64(binary.BigEndian.Uint64(b[9:])), id: int64(binary.BigEndian.Uint64(b[17:]))}, nil
}

// pageLimit reads the limit query parameter (default defaultPageSize, at most maxPageSize).
func pageLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, httpx.Invalid("limit", "must be a whole number from 1 to "+strconv.Itoa(maxPageSize))
	}
	return n, nil
}

// privacyRequestList pages through the workspace's requests in the order above, optionally only
// those of one status and one kind.
func (h *Handler) privacyRequestList(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	q := r.URL.Query()
	status, kind := q.Get("status"), q.Get("kind")
	if status != "" && !slices.Contains(RequestStatuses, status) {
		return httpx.Invalid("status", "must be one of "+strings.Join(RequestStatuses, ", "))
	}
	if kind != "" && !slices.Contains(RequestKinds, kind) {
		return httpx.Invalid("kind", "must be one of "+strings.Join(RequestKinds, ", "))
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	cur := requestCursor{now: h.Service.now().UTC().Truncate(time.Microsecond), rank: -1}
	if s := q.Get("cursor"); s != "" {
		if cur, err = decodeRequestCursor(s); err != nil {
			return err
		}
	}
	rows, err := h.DB.Query(ctx, `SELECT `+privacyRequestColumns+`, `+requestRankExpr+`, `+requestKeyExpr+
		privacyRequestFrom+`WHERE r.workspace_id = $1 AND ($3 = '' OR r.status = $3) AND ($4 = '' OR r.kind = $4)
			AND (`+requestRankExpr+`, `+requestKeyExpr+`, r.id) > ($5, $6, $7)
		ORDER BY 14, 15, r.id LIMIT $8`,
		p.WorkspaceID, cur.now, status, kind, cur.rank, cur.key, cur.id, limit+1)
	if err != nil {
		return err
	}
	type placed struct {
		req  PrivacyRequest
		rank int
		key  int64
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (placed, error) {
		var pl placed
		r := &pl.req
		err := row.Scan(&r.ID, &r.WorkspaceID, &r.ContactID, &r.Kind, &r.Status, &r.Channel, &r.ReceivedAt, &r.DueAt,
			&r.CompletedAt, &r.HandledBy, &r.Note, &r.UpdatedAt, &r.ContactExternalID, &pl.rank, &pl.key)
		return pl, err
	})
	if err != nil {
		return err
	}
	out := map[string]any{}
	if len(list) > limit {
		list = list[:limit]
		last := list[limit-1]
		out["next_cursor"] = requestCursor{now: cur.now, rank: last.rank, key: last.key, id: last.req.ID}.encode()
	}
	reqs := make([]privacyRequestJSON, len(list))
	for i, pl := range list {
		reqs[i] = privacyRequestOut(pl.req, cur.now)
	}
	out["privacy_requests"] = reqs
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
