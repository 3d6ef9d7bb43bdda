package consent

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
)

// Double opt-in: POST /v1/subscribe records a request and sends a confirmation email in one
// transaction; only a POST to the link in that email grants consent (subscribe_confirm in this
// file's second half).

const (
	// maxSubscribeBody bounds a subscribe request: a form key, an address, a name and a few
	// purpose names fit many times over.
	maxSubscribeBody = 16 << 10
	// maxSubscribePurposes bounds the purposes one request may name.
	maxSubscribePurposes = 20
	// subscribeCap is how many confirmation emails one address of a workspace receives per
	// subscribeCapWindow at most, whoever asks: the form is public, so without it anyone could
	// make Herald mail a stranger again and again.
	subscribeCap       = 3
	subscribeCapWindow = 24 * time.Hour
	// defaultSubscribeTTL is how long a confirmation link stays valid when SubscribeTTL is unset.
	defaultSubscribeTTL = 72 * time.Hour
	// subscribeTokenBytes is the entropy of a confirmation token.
	subscribeTokenBytes = 32
)

// Outcomes of herald_subscribe_requests_total.
const (
	subscribeSent       = "sent"
	subscribeThrottled  = "throttled"
	subscribeCapped     = "capped"
	subscribeSuppressed = "suppressed"
	subscribeConfirmed  = "confirmed"
	subscribeExpired    = "expired"
)

// subscribeBlockers are the suppression reasons for which a subscribe request sends nothing: the
// address bounces, complained, was erased or was suppressed by hand. An unsubscribe from all is
// not among them: the person is asking again, and confirming lifts it.
var subscribeBlockers = []string{ReasonHardBounce, ReasonComplaint, ReasonErased, ReasonManual}

// SubscribeRoutes mounts POST /subscribe, the public double opt-in endpoint, on r. It needs no
// API key: the form key names the workspace. It also creates the default Limits when h.Limits is
// nil, so call it once, before serving.
func (h *Handler) SubscribeRoutes(r chi.Router) {
	if h.Limits == nil {
		h.Limits = &Limits{Now: h.Service.Now}
	}
	r.Post("/subscribe", httpx.Handler(h.logger(), h.subscribe))
}

// subscribeRequest is the body of POST /subscribe, as JSON or as an HTML form.
type subscribeRequest struct {
	FormKey  string   `json:"form_key"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Purposes []string `json:"purposes"`
}

// subscribeAccepted is the answer to every accepted request, whatever happened to the address.
var subscribeAccepted = map[string]string{
	"status": "pending",
	"detail": "If this address can receive our email, a message with a confirmation link is on its way.",
}

func (h *Handler) subscribe(w http.ResponseWriter, r *http.Request) error {
	limits := h.limits()
	if ok, wait := limits.AllowIP(r.RemoteAddr); !ok {
		return h.throttled(w, wait)
	}
	req, isForm, err := decodeSubscribe(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if req.FormKey == "" || !printable(req.FormKey, 100) {
		return httpx.NotFound("no such form")
	}
	settings, err := SettingsByFormKey(ctx, h.DB, req.FormKey)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no such form")
	}
	if err != nil {
		return err
	}
	if ok, wait := limits.AllowFormKey(settings.FormKey); !ok {
		return h.throttled(w, wait)
	}
	address, err := contacts.NormalizeAddress(req.Email)
	if err != nil {
		return httpx.Invalid("email", err.Error())
	}
	name, err := subscriberName(req.Name)
	if err != nil {
		return err
	}
	purposes, err := subscribePurposes(ctx, h.DB, settings.WorkspaceID, req.Purposes)
	if err != nil {
		return err
	}
	if settings.ConfirmFrom == "" {
		return httpx.NewProblem(http.StatusConflict, "this workspace has no confirmation sender configured")
	}
	var outcome, requestID string
	err = pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		var err error
		outcome, requestID, err = h.subscribeTx(ctx, tx, settings, address, name, purposes, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	h.Service.Metrics.SubscribeRequests.WithLabelValues(outcome).Inc()
	h.logger().InfoContext(ctx, "subscribe request", "workspace_id", settings.WorkspaceID,
		"outcome", outcome, "request_id", requestID)
	// The answer is the same whether the email was sent, capped or suppressed: a public form
	// must not tell anyone which addresses are known, bounce or complained.
	if isForm {
		writeSubscribePage(w, http.StatusAccepted, subscribePage{Title: "Check your inbox",
			Paragraphs: []string{subscribeAccepted["detail"], "Open the link in it to confirm your subscription."}})
		return nil
	}
	httpx.WriteJSON(w, http.StatusAccepted, subscribeAccepted)
	return nil
}

// limits returns h.Limits, or a fresh default set when SubscribeRoutes did not create one (a
// Handler used without it, as in tests).
func (h *Handler) limits() *Limits {
	if h.Limits == nil {
		return &Limits{}
	}
	return h.Limits
}

func (h *Handler) throttled(w http.ResponseWriter, wait time.Duration) error {
	h.Service.Metrics.SubscribeRequests.WithLabelValues(subscribeThrottled).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	return httpx.NewProblem(http.StatusTooManyRequests, "too many requests; try again later")
}

// decodeSubscribe reads a JSON body or an HTML form post (purposes repeated, or purposes[]).
func decodeSubscribe(w http.ResponseWriter, r *http.Request) (req subscribeRequest, isForm bool, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return req, false, httpx.DecodeJSON(w, r, maxSubscribeBody, &req)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSubscribeBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, true, httpx.NewProblem(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body exceeds %d bytes", mbe.Limit))
		}
		return req, true, httpx.BadRequest("malformed form body")
	}
	f := r.PostForm
	req = subscribeRequest{FormKey: f.Get("form_key"), Email: f.Get("email"), Name: f.Get("name"),
		Purposes: append(f["purposes"], f["purposes[]"]...)}
	return req, true, nil
}

// subscriberName checks the optional name: it goes into a To: header and into the contact, so
// no line breaks or control characters, and no angle brackets (a name never needs them, markup
// does).
func subscriberName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 200 {
		return "", httpx.Invalid("name", "must be at most 200 characters of text")
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", httpx.Invalid("name", "must not contain line breaks or control characters")
		}
	}
	if strings.ContainsAny(s, "<>") {
		return "", httpx.Invalid("name", "must not contain < or >")
	}
	return s, nil
}

// subscribePurposes resolves the requested purpose names in the workspace, in order, without
// duplicates; an unknown one is a 422 naming it.
func subscribePurposes(ctx context.Context, q db.Querier, workspaceID int64, names []string) ([]Purpose, error) {
	if len(names) == 0 {
		return nil, httpx.Invalid("purposes", "name at least one purpose")
	}
	if len(names) > maxSubscribePurposes {
		return nil, httpx.Invalid("purposes", fmt.Sprintf("at most %d purposes", maxSubscribePurposes))
	}
	var out []Purpose
	for i, n := range names {
		if !PurposeNameRE.MatchString(n) {
			return nil, httpx.Invalid("purposes", fmt.Sprintf("purposes[%d] is not a purpose name", i))
		}
		if slices.ContainsFunc(out, func(p Purpose) bool { return p.Name == n }) {
			continue
		}
		p, err := PurposeGet(ctx, q, workspaceID, n)
		if errors.Is(err, db.ErrNotFound) {
			return nil, httpx.Invalid("purposes", fmt.Sprintf("no such purpose: %s", n))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// subscribeTx records the request and sends its confirmation, unless the address is suppressed
// or capped; it returns the outcome and, when sent, the request id.
func (h *Handler) subscribeTx(ctx context.Context, tx pgx.Tx, settings Settings, address, name string,
	purposes []Purpose, r *http.Request) (outcome, requestID string, err error) {
	ws := settings.WorkspaceID
	sp, err := h.Service.SuppressionGet(ctx, tx, ws, address)
	switch {
	case err == nil && slices.Contains(subscribeBlockers, sp.Reason):
		return subscribeSuppressed, "", nil
	case err != nil && !errors.Is(err, db.ErrNotFound):
		return "", "", err
	}
	// Requests for one address are counted one at a time, so parallel posts cannot all pass the cap.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($2, $1))`, ws, address); err != nil {
		return "", "", fmt.Errorf("lock address: %w", err)
	}
	now := h.Service.now().UTC()
	var recent int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM subscribe_requests
		WHERE workspace_id = $1 AND address = $2 AND created_at > $3`, ws, address, now.Add(-subscribeCapWindow)).Scan(&recent)
	if err != nil {
		return "", "", fmt.Errorf("count recent requests: %w", err)
	}
	if recent >= subscribeCap {
		return subscribeCapped, "", nil
	}

	var wsName string
	if err := tx.QueryRow(ctx, `SELECT name FROM workspaces WHERE id = $1`, ws).Scan(&wsName); err != nil {
		return "", "", fmt.Errorf("workspace name: %w", err)
	}
	token, tokenHash := newSubscribeToken()
	requestID = newRequestID()
	expires := now.Add(h.subscribeTTL())
	names, versions := make([]string, len(purposes)), make([]int32, len(purposes))
	for i, p := range purposes {
		names[i], versions[i] = p.Name, int32(p.NoticeVersion)
	}
	c := confirmationEmail(wsName, name, purposes, subscribeConfirmURL(h.BaseURL, token), expires)
	c.WorkspaceID, c.RequestID, c.From, c.To, c.ToName = ws, requestID, settings.ConfirmFrom, address, name
	messageID, err := h.Mailer.SendConfirmation(ctx, tx, c)
	if err != nil {
		return "", "", fmt.Errorf("send confirmation: %w", err)
	}
	ev := requestEvidence(r)
	_, err = tx.Exec(ctx, `
		INSERT INTO subscribe_requests (id, workspace_id, token_hash, address, name, purposes, notice_versions,
			ip, user_agent, message_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		requestID, ws, tokenHash, address, name, names, versions, ev.IP, ev.UserAgent,
		messageID, now, expires)
	if err != nil {
		return "", "", fmt.Errorf("insert subscribe request: %w", err)
	}
	return subscribeSent, requestID, nil
}

func (h *Handler) subscribeTTL() time.Duration {
	if h.SubscribeTTL > 0 {
		return h.SubscribeTTL
	}
	return defaultSubscribeTTL
}

// newSubscribeToken returns a random confirmation token and the SHA-256 under which it is
// stored: the database alone cannot confirm anyone's subscription.
func newSubscribeToken() (token string, hash []byte) {
	b := make([]byte, subscribeTokenBytes)
	_, _ = rand.Read(b)
	token = tokenEncoding.EncodeToString(b)
	return token, subscribeTokenHash(token)
}

func subscribeTokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// subscribeTokenLen is the length of an encoded token (unpadded base32 of 32 bytes).
var subscribeTokenLen = tokenEncoding.EncodedLen(subscribeTokenBytes)

// parseSubscribeToken normalises a token from a URL, or reports it malformed.
func parseSubscribeToken(s string) (string, bool) {
	s = strings.ToLower(s)
	if len(s) != subscribeTokenLen {
		return "", false
	}
	if _, err := tokenEncoding.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

func subscribeConfirmURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/subscribe/confirm/" + token
}

// newRequestID returns a random (version 4) UUID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// externalIDFor is the external id of a contact created by a confirmation: "herald:" and the
// address, or its hash when that would exceed the 255 characters an external id may have.
func externalIDFor(address string) string {
	if id := "herald:" + address; utf8.RuneCountInString(id) <= 255 {
		return id
	}
	h := sha256.Sum256([]byte(address))
	return "herald:sha256:" + hex.EncodeToString(h[:])
}

// confirmationEmail writes the confirmation email: who asks (the workspace), for what (each
// purpose's title and the notice the person is agreeing to), and the link.
func confirmationEmail(wsName, name string, purposes []Purpose, link string, expires time.Time) Confirmation {
	var text strings.Builder
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	fmt.Fprintf(&text, "%s\n\nSomeone, we hope you, asked %s to send email to this address about:\n\n", greeting, wsName)
	for _, p := range purposes {
		fmt.Fprintf(&text, "* %s\n  %s\n\n", p.Title, strings.ReplaceAll(p.Notice, "\n", "\n  "))
	}
	fmt.Fprintf(&text, "To confirm, open this link and press the button on the page:\n%s\n\n", link)
	fmt.Fprintf(&text, "The link works until %s. If you did not ask for this, ignore this email: "+
		"you will not be subscribed and we will not write again about it.\n", expires.UTC().Format("2 January 2006 15:04 MST"))
	var html strings.Builder
	_ = confirmationHTML.Execute(&html, map[string]any{"Greeting": greeting, "Workspace": wsName,
		"Purposes": purposes, "Link": link, "Expires": expires.UTC().Format("2 January 2006 15:04 MST")})
	return Confirmation{Subject: "Please confirm your subscription to " + wsName, Text: text.String(), HTML: html.String()}
}

var confirmationHTML = htmltemplate.Must(htmltemplate.New("confirmation").Parse(`<!doctype html>
<html><body style="font-family:sans-serif;line-height:1.5;color:#222">
<p>{{.Greeting}}</p>
<p>Someone, we hope you, asked {{.Workspace}} to send email to this address about:</p>
<ul>{{range .Purposes}}<li><strong>{{.Title}}</strong><br>{{.Notice}}</li>{{end}}</ul>
<p><a href="{{.Link}}">Confirm your subscription</a></p>
<p>The link works until {{.Expires}}. If you did not ask for this, ignore this email: you will not be
subscribed and we will not write again about it.</p>
</body></html>`))

// confirmRoutes mounts the confirmation link: GET shows a button and changes nothing (mail
// scanners fetch links), POST confirms.
func (h *Handler) confirmRoutes(r chi.Router) {
	r.Get("/subscribe/confirm/{token}", h.confirmShow)
	r.Post("/subscribe/confirm/{token}", h.confirm)
}

// pendingRequest is a stored subscribe request.
type pendingRequest struct {
	ID          string
	WorkspaceID int64
	Workspace   string
	Address     string
	Name        string
	Purposes    []string
	Versions    []int32
	IP          string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	ConfirmedAt *time.Time
}

// pendingByToken returns the request of a token hash (locked FOR UPDATE when lock is set), or
// an error wrapping db.ErrNotFound.
func pendingByToken(ctx context.Context, q db.Querier, hash []byte, lock bool) (pendingRequest, error) {
	query := `SELECT r.id::text, r.workspace_id, w.name, r.address, r.name, r.purposes, r.notice_versions, r.ip,
			r.created_at, r.expires_at, r.confirmed_at
		FROM subscribe_requests r JOIN workspaces w ON w.id = r.workspace_id WHERE r.token_hash = $1`
	if lock {
		query += ` FOR UPDATE OF r`
	}
	var p pendingRequest
	err := q.QueryRow(ctx, query, hash).Scan(&p.ID, &p.WorkspaceID, &p.Workspace, &p.Address, &p.Name,
		&p.Purposes, &p.Versions, &p.IP, &p.CreatedAt, &p.ExpiresAt, &p.ConfirmedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("subscribe request: %w", db.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("subscribe request: %w", err)
	}
	return p, nil
}

// purposeTitles returns the titles of the request's purposes for the page (the name when a
// purpose has since gone).
func purposeTitles(ctx context.Context, q db.Querier, p pendingRequest) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT name, title FROM purposes WHERE workspace_id = $1 AND name = ANY ($2)`,
		p.WorkspaceID, p.Purposes)
	if err != nil {
		return nil, fmt.Errorf("purpose titles: %w", err)
	}
	titles := map[string]string{}
	var n, t string
	if _, err := pgx.ForEachRow(rows, []any{&n, &t}, func() error { titles[n] = t; return nil }); err != nil {
		return nil, fmt.Errorf("purpose titles: %w", err)
	}
	out := make([]string, len(p.Purposes))
	for i, name := range p.Purposes {
		out[i] = cmp.Or(titles[name], name)
	}
	return out, nil
}

var (
	pageUnknown   = subscribePage{Title: "Link not valid", Paragraphs: []string{"This confirmation link is not valid. Please check that you copied all of it."}}
	pageExpired   = subscribePage{Title: "Link expired", Paragraphs: []string{"This confirmation link has expired. Please subscribe again to get a new one."}}
	pageDone      = subscribePage{Title: "Already confirmed", Paragraphs: []string{"This subscription is already confirmed. Thank you."}}
	pageConfirmed = subscribePage{Title: "Subscription confirmed", Paragraphs: []string{"Thank you: your subscription is confirmed. Every email we send you has a link to unsubscribe."}}
	pageError     = subscribePage{Title: "Something went wrong", Paragraphs: []string{"We could not handle this request. Please try again in a few minutes."}}
)

// confirmShow answers GET: it only reads, and offers the button that confirms.
func (h *Handler) confirmShow(w http.ResponseWriter, r *http.Request) {
	token, ok := parseSubscribeToken(chi.URLParam(r, "token"))
	if !ok {
		writeSubscribePage(w, http.StatusNotFound, pageUnknown)
		return
	}
	p, err := pendingByToken(r.Context(), h.DB, subscribeTokenHash(token), false)
	switch {
	case errors.Is(err, db.ErrNotFound):
		writeSubscribePage(w, http.StatusNotFound, pageUnknown)
		return
	case err != nil:
		h.pageFailed(w, r, err)
		return
	case p.ConfirmedAt != nil:
		writeSubscribePage(w, http.StatusOK, pageDone)
		return
	case !h.Service.now().Before(p.ExpiresAt):
		writeSubscribePage(w, http.StatusGone, pageExpired)
		return
	}
	titles, err := purposeTitles(r.Context(), h.DB, p)
	if err != nil {
		h.pageFailed(w, r, err)
		return
	}
	writeSubscribePage(w, http.StatusOK, subscribePage{Title: "Confirm your subscription",
		Paragraphs: []string{"Press the button to receive email from " + p.Workspace + " about:"},
		Items:      titles, Action: token, Button: "Confirm my subscription"})
}

// confirm answers POST: in one transaction it grants each purpose, lifts an unsubscribe from
// all and marks the request confirmed; the request row stays locked throughout, so two
// simultaneous confirmations record the events once.
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	token, ok := parseSubscribeToken(chi.URLParam(r, "token"))
	if !ok {
		writeSubscribePage(w, http.StatusNotFound, pageUnknown)
		return
	}
	ctx := r.Context()
	var status int
	var page subscribePage
	var confirmedID string
	err := pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		p, err := pendingByToken(ctx, tx, subscribeTokenHash(token), true)
		if errors.Is(err, db.ErrNotFound) {
			status, page = http.StatusNotFound, pageUnknown
			return nil
		}
		if err != nil {
			return err
		}
		now := h.Service.now().UTC()
		switch {
		case p.ConfirmedAt != nil:
			status, page = http.StatusOK, pageDone
			return nil
		case !now.Before(p.ExpiresAt):
			status, page = http.StatusGone, pageExpired
			return nil
		}
		// Between request and confirmation the address may have bounced, complained or been
		// erased; that wins over the click, as it does over any send.
		sp, err := h.Service.SuppressionGet(ctx, tx, p.WorkspaceID, p.Address)
		if err == nil && slices.Contains(subscribeBlockers, sp.Reason) {
			status, page = http.StatusGone, pageExpired
			return nil
		} else if err != nil && !errors.Is(err, db.ErrNotFound) {
			return err
		}
		if err := h.grant(ctx, tx, p, now, r); err != nil {
			return err
		}
		status, page, confirmedID = http.StatusOK, pageConfirmed, p.ID
		return nil
	})
	if err != nil {
		h.pageFailed(w, r, fmt.Errorf("confirm subscription: %w", err))
		return
	}
	if confirmedID != "" {
		h.Service.Metrics.SubscribeRequests.WithLabelValues(subscribeConfirmed).Inc()
		h.logger().InfoContext(ctx, "subscription confirmed", "request_id", confirmedID)
	}
	writeSubscribePage(w, status, page)
}

// grant records the confirmed request: contact, one granted event per purpose with the notice
// version shown at request time, the lifted unsubscribe-from-all, and confirmed_at.
func (h *Handler) grant(ctx context.Context, tx pgx.Tx, p pendingRequest, now time.Time, r *http.Request) error {
	contactID, err := contactForAddress(ctx, tx, p)
	if err != nil {
		return err
	}
	// The request's IP enters the chain, which is never erased, so only as a keyed hash; the
	// confirming request's IP, user agent and the address are evidence, which erasure removes.
	proof := map[string]string{
		"double_opt_in":   "confirmed",
		"request_id":      p.ID,
		"requested_at":    p.CreatedAt.UTC().Format(time.RFC3339Nano),
		"request_ip_hash": hex.EncodeToString(h.Service.Keys.AddressHash(p.WorkspaceID, p.IP)),
		"confirmed_at":    now.Format(time.RFC3339Nano),
	}
	ev := requestEvidence(r)
	ev.Address = p.Address
	events := make([]*Event, len(p.Purposes))
	for i, purpose := range p.Purposes {
		events[i] = &Event{WorkspaceID: p.WorkspaceID, ContactID: contactID, Purpose: purpose, Action: ActionGranted,
			Source: SourceForm, LawfulBasis: BasisConsent, NoticeVersion: int(p.Versions[i]), Actor: ActorRecipient,
			Proof: proof, OccurredAt: now, Evidence: &ev}
	}
	if err := h.Service.RecordAll(ctx, tx, events); err != nil {
		return err
	}
	if _, err := h.Service.Unsuppress(ctx, tx, p.WorkspaceID, p.Address, ReasonUnsubscribedAll); err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE subscribe_requests SET confirmed_at = $2 WHERE id = $1`, p.ID, now); err != nil {
		return fmt.Errorf("mark confirmed: %w", err)
	}
	return nil
}

// contactForAddress finds the workspace's contact with the request's address, or creates one
// whose external id says Herald made it.
func contactForAddress(ctx context.Context, tx pgx.Tx, p pendingRequest) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM contacts WHERE workspace_id = $1 AND email = $2 ORDER BY id LIMIT 1`,
		p.WorkspaceID, p.Address).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("find contact: %w", err)
	}
	c, _, err := contacts.Upsert(ctx, tx, p.WorkspaceID, contacts.Input{ExternalID: externalIDFor(p.Address),
		Email: p.Address, Name: p.Name})
	if err != nil {
		return 0, fmt.Errorf("create contact: %w", err)
	}
	return c.ID, nil
}

func (h *Handler) pageFailed(w http.ResponseWriter, r *http.Request, err error) {
	h.logger().ErrorContext(r.Context(), "subscribe page failed", "method", r.Method, "err", err)
	writeSubscribePage(w, http.StatusInternalServerError, pageError)
}

// subscribePage is one of the small pages of the double opt-in.
type subscribePage struct {
	Title      string
	Paragraphs []string
	Items      []string
	Action     string // the form's action (relative), when the page has a button
	Button     string
}

var subscribePageHTML = htmltemplate.Must(htmltemplate.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#222}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:4px;background:#1a5fb4;color:#fff;cursor:pointer}</style>
</head><body><h1>{{.Title}}</h1>
{{range .Paragraphs}}<p>{{.}}</p>
{{end}}{{if .Items}}<ul>{{range .Items}}<li>{{.}}</li>{{end}}</ul>
{{end}}{{if .Action}}<form method="post" action="{{.Action}}"><button type="submit">{{.Button}}</button></form>
{{end}}</body></html>
`))

// writeSubscribePage writes a page with the headers of every recipient page (setPageHeaders).
func writeSubscribePage(w http.ResponseWriter, status int, p subscribePage) {
	setPageHeaders(w.Header())
	w.WriteHeader(status)
	_ = subscribePageHTML.Execute(w, p)
}
