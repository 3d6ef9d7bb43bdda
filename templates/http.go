package templates

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// defaultMaxBodyBytes fits three parts of MaxPartBytes even when JSON escapes much of the HTML.
const defaultMaxBodyBytes = 4 << 20

// Handler serves the template API under an authenticated /v1 router.
type Handler struct {
	DB     *pgxpool.Pool
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies; 0 means 4 MiB.
	MaxBodyBytes int64
	// BaseURL is Herald's public origin: previews and test sends fill the link functions with
	// BASE/u/preview (unsubscribe, preferences) and BASE/v/preview (view online).
	BaseURL string
	// TestSender sends POST /templates/{name}/test; nil answers 501.
	TestSender TestSender
}

// TestSender sends one test message through the transactional path (mailer implements it;
// templates cannot import mailer, which imports templates).
type TestSender interface {
	SendTest(ctx context.Context, m TestMessage) (messageID string, err error)
}

// TestMessage is a rendered test send: one message to one address, not to a contact, so the
// decision before sending is the transactional one (suppressed addresses are refused).
type TestMessage struct {
	WorkspaceID int64
	// To is a bare address normalised by contacts.NormalizeAddress.
	To string
	// From is "addr@example.com" or "Name <addr@example.com>", checked to have no line break.
	From string
	// Subject already carries the "[Test] " prefix.
	Subject string
	HTML    string
	Text    string
}

// Routes mounts the template routes on r, which must already run workspace.Auth. Every route but
// the test send needs a key with messages:send or campaigns:write (templates serve both streams).
//
//	POST /templates                                 store a new version
//	GET  /templates/{name}                          the latest version
//	GET  /templates/{name}/versions/{version}       one version
//	POST /templates/{name}/preview                  render {version?, data?, contact?, stream?, postal_address?}
//	POST /templates/{name}/test                     render as preview and send to {to} from {from} (campaigns:write)
func (h *Handler) Routes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(h.logger(), workspace.ScopeMessagesSend, workspace.ScopeCampaignsWrite))
		r.Post("/templates", httpx.Handler(h.logger(), h.create))
		r.Get("/templates/{name}", httpx.Handler(h.logger(), h.get))
		r.Get("/templates/{name}/versions/{version}", httpx.Handler(h.logger(), h.get))
		r.Post("/templates/{name}/preview", httpx.Handler(h.logger(), h.preview))
	})
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(h.logger(), workspace.ScopeCampaignsWrite))
		r.Post("/templates/{name}/test", httpx.Handler(h.logger(), h.test))
	})
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

func (h *Handler) maxBody() int64 { return httpx.LimitOr(h.MaxBodyBytes, defaultMaxBodyBytes) }

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var in Input
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &in); err != nil {
		return err
	}
	p := workspace.MustFromContext(r.Context())
	t, err := Create(r.Context(), h.DB, p.WorkspaceID, in)
	if err != nil {
		return problem(err)
	}
	w.Header().Set("Location", r.URL.Path+"/"+url.PathEscape(t.Name)+"/versions/"+strconv.Itoa(t.Version))
	httpx.WriteJSON(w, http.StatusCreated, t)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	version := 0
	if v := chi.URLParam(r, "version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return httpx.NotFound("no such template version")
		}
		version = n
	}
	t, err := Get(r.Context(), h.DB, workspace.MustFromContext(r.Context()).WorkspaceID, name, version)
	if err != nil {
		return problem(err)
	}
	httpx.WriteJSON(w, http.StatusOK, t)
	return nil
}

type previewRequest struct {
	// Version to render; 0 or absent means the latest.
	Version int             `json:"version"`
	Data    json.RawMessage `json:"data"`
	// Contact is an external_id: the contact's fields become .contact (see ContactData).
	Contact string `json:"contact"`
	// Stream "marketing" checks the marketing rule (CheckMarketing) and fills the links.
	Stream string `json:"stream"`
	// PostalAddress replaces {{postal_address}}; absent means previewPostalAddress.
	PostalAddress string `json:"postal_address"`
}

// previewPostalAddress stands for the sender's address in previews and test sends that give none.
const previewPostalAddress = "Postal address of the sender"

// maxPostalAddress bounds a postal address given in a request.
const maxPostalAddress = 1000

func (h *Handler) preview(w http.ResponseWriter, r *http.Request) error {
	var req previewRequest
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &req); err != nil {
		return err
	}
	out, err := h.render(r.Context(), chi.URLParam(r, "name"), req, req.Stream == "marketing")
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// render renders the requested version for a preview or a test send: data merged with the
// contact's fields, the marketing rule checked for stream "marketing", and the links filled with
// preview values when withLinks is set.
func (h *Handler) render(ctx context.Context, name string, req previewRequest, withLinks bool) (Rendered, error) {
	if req.Version < 0 {
		return Rendered{}, httpx.Invalid("version", "must be a positive version number, or 0 for the latest")
	}
	switch req.Stream {
	case "", "transactional", "marketing":
	default:
		return Rendered{}, httpx.Invalid("stream", "must be transactional or marketing")
	}
	if err := checkPostalAddress(req.PostalAddress); err != nil {
		return Rendered{}, httpx.Invalid("postal_address", err.Error())
	}
	data, err := DecodeData(req.Data)
	if err != nil {
		return Rendered{}, httpx.Invalid("data", err.Error())
	}
	ws := workspace.MustFromContext(ctx).WorkspaceID
	t, err := Get(ctx, h.DB, ws, name, req.Version)
	if err != nil {
		return Rendered{}, problem(err)
	}
	if req.Contact != "" {
		if _, ok := data["contact"]; ok {
			return Rendered{}, httpx.Invalid("data", "give either contact or data.contact, not both")
		}
		c, err := contacts.Get(ctx, h.DB, ws, req.Contact)
		if errors.Is(err, db.ErrNotFound) {
			return Rendered{}, httpx.NotFound("no such contact")
		}
		if err != nil {
			return Rendered{}, err
		}
		data["contact"] = ContactData(c)
	}
	if req.Stream == "marketing" {
		if err := CheckMarketing(t); err != nil {
			return Rendered{}, problem(err)
		}
	}
	out, err := Render(t, data)
	var pe *PartError
	if errors.As(err, &pe) {
		// The stored version parsed, so this is the data: a missing key, a bad date, a line break
		// in the subject. The detail names the template part.
		return Rendered{}, httpx.Invalid("data", pe.Error())
	}
	if err != nil {
		return Rendered{}, err
	}
	if withLinks {
		out = out.WithLinks(h.previewLinks(req.PostalAddress))
	}
	return out, nil
}

// previewLinks are the links of previews and test sends: they lead to no one's preferences.
func (h *Handler) previewLinks(postalAddress string) Links {
	base := strings.TrimRight(h.BaseURL, "/")
	if postalAddress == "" {
		postalAddress = previewPostalAddress
	}
	return Links{Unsubscribe: base + "/u/preview", Preferences: base + "/u/preview", ViewOnline: base + "/v/preview",
		PostalAddress: postalAddress}
}

// checkPostalAddress allows printable text and line breaks.
func checkPostalAddress(s string) error {
	if len(s) > maxPostalAddress {
		return errors.New("is longer than " + strconv.Itoa(maxPostalAddress) + " bytes")
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || (unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t') {
			return errors.New("must be printable text (line breaks allowed)")
		}
	}
	return nil
}

type testRequest struct {
	previewRequest
	// To is the one address the test goes to (not a contact).
	To string `json:"to"`
	// From is "addr@example.com" or "Name <addr@example.com>".
	From string `json:"from"`
}

// testSubjectPrefix marks a test send's subject.
const testSubjectPrefix = "[Test] "

func (h *Handler) test(w http.ResponseWriter, r *http.Request) error {
	var req testRequest
	if err := httpx.DecodeJSON(w, r, h.maxBody(), &req); err != nil {
		return err
	}
	if h.TestSender == nil {
		return httpx.NewProblem(http.StatusNotImplemented, "test sends are not configured on this server")
	}
	if req.To == "" {
		return httpx.Invalid("to", "the address to send the test to is required")
	}
	to, err := contacts.NormalizeAddress(req.To)
	if err != nil {
		return httpx.Invalid("to", err.Error())
	}
	from, err := checkFrom(req.From)
	if err != nil {
		return httpx.Invalid("from", err.Error())
	}
	out, err := h.render(r.Context(), chi.URLParam(r, "name"), req.previewRequest, true)
	if err != nil {
		return err
	}
	id, err := h.TestSender.SendTest(r.Context(), TestMessage{WorkspaceID: workspace.MustFromContext(r.Context()).WorkspaceID,
		To: to, From: from, Subject: testSubjectPrefix + out.Subject, HTML: out.HTML, Text: out.Text})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "queued", "to": to})
	return nil
}

// checkFrom accepts "addr" or "Name <addr>" with no line break and returns it trimmed; the
// mailer parses it again with the rules of every send.
func checkFrom(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", errors.New("a sender address is required")
	case strings.ContainsAny(s, "\r\n\x00"):
		return "", errors.New("must not contain line breaks or NUL")
	case len(s) > 512:
		return "", errors.New("too long")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", errors.New("is not a valid address")
	}
	if _, err := contacts.NormalizeAddress(a.Address); err != nil {
		return "", err
	}
	return s, nil
}

// problem maps package errors to client-safe problems; anything else stays an internal error.
func problem(err error) error {
	var pe *PartError
	switch {
	case errors.As(err, &pe):
		return httpx.Invalid(pe.Part, pe.Err.Error())
	case errors.Is(err, db.ErrNotFound):
		return httpx.NotFound("no such template")
	case errors.Is(err, ErrBusy):
		return httpx.NewProblem(http.StatusConflict, ErrBusy.Error())
	}
	return err
}
