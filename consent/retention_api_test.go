package consent_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"herald/consent"
	"herald/internal/workspace"
)

// TestAPIRetention: GET shows the defaults until PUT stores the workspace's own policy (admin
// only, audited); out-of-bounds, mistyped, unknown and oversized input is a 4xx problem and
// changes nothing; another workspace keeps its defaults.
func TestAPIRetention(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(b.pool, logger))
		(&consent.RetentionHandler{DB: b.pool, Logger: logger, MaxBodyBytes: apiMaxBody,
			Defaults: consent.RetentionPolicy{OptedOutDays: 20, TrackingDays: 395, BodyDays: 30, DeletionGraceDays: 7}}).Routes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)

	b.call(t, http.MethodGet, "/v1/retention", "contacts", nil).RequireProblem(t, http.StatusForbidden, "")
	b.call(t, http.MethodPut, "/v1/retention", "campaigns", map[string]int{"body_days": 5}).RequireProblem(t, http.StatusForbidden, "")
	res := b.call(t, http.MethodGet, "/v1/retention", "admin", nil)
	if res.Status != http.StatusOK || res.Body["source"] != "default" || res.Body["opted_out_days"] != float64(20) {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"zero", map[string]int{"opted_out_days": 0}, http.StatusUnprocessableEntity, "opted_out_days"},
		{"beyond the promise", map[string]int{"opted_out_days": 31}, http.StatusUnprocessableEntity, "opted_out_days"},
		{"13 months and a day", map[string]int{"tracking_days": 396}, http.StatusUnprocessableEntity, "tracking_days"},
		{"negative", map[string]int{"body_days": -1}, http.StatusUnprocessableEntity, "body_days"},
		{"grace over 30", map[string]int{"deletion_grace_days": 31}, http.StatusUnprocessableEntity, "deletion_grace_days"},
		{"string", `{"body_days": "5\r\nX-Evil: 1"}`, http.StatusUnprocessableEntity, "body_days"},
		{"script", `{"body_days": "<script>alert(1)</script>"}`, http.StatusUnprocessableEntity, "body_days"},
		{"unknown field", `{"forever": true}`, http.StatusUnprocessableEntity, "forever"},
		{"truncated", `{"body_days": 5`, http.StatusBadRequest, ""},
		{"huge number", `{"body_days": 99999999999999999999}`, http.StatusUnprocessableEntity, "body_days"},
		{"oversized", `{"body_days": 5, "x": "` + strings.Repeat("a", apiMaxBody) + `"}`, http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := b.call(t, http.MethodPut, "/v1/retention", "admin", tc.body)
			if res.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.Status, tc.status, res.Raw)
			}
			if tc.status == http.StatusUnprocessableEntity {
				res.RequireProblem(t, tc.status, tc.field)
			}
		})
	}
	if n := b.count(t, `SELECT count(*) FROM retention_policies`); n != 0 {
		t.Fatalf("%d policies stored by refused requests", n)
	}
	res = b.call(t, http.MethodPut, "/v1/retention", "admin", map[string]int{"body_days": 7, "tracking_days": 180})
	if res.Status != http.StatusOK || res.Body["source"] != "workspace" || res.Body["body_days"] != float64(7) ||
		res.Body["tracking_days"] != float64(180) || res.Body["opted_out_days"] != float64(20) || res.Body["updated_at"] == nil {
		t.Fatalf("put: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'retention.put' AND workspace_id = $1 AND actor = $2
		AND detail->'policy'->>'body_days' = '7' AND detail->'before'->>'source' = 'default'`, b.wsA, "api_key:"+strconv.FormatInt(b.keyID["admin"], 10)); n != 1 {
		t.Fatalf("%d audit entries", n)
	}
	if got := b.call(t, http.MethodGet, "/v1/retention", "admin", nil); got.Body["body_days"] != float64(7) {
		t.Fatalf("get after put: %s", got.Raw)
	}
	p, err := consent.RetentionPolicyGet(t.Context(), b.pool, b.wsB, consent.DefaultRetentionPolicy())
	if err != nil || p.Stored || p.RetentionPolicy != consent.DefaultRetentionPolicy() {
		t.Fatalf("other workspace: %+v %v", p, err)
	}
}
