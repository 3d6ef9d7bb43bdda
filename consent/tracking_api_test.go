package consent_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"herald/consent"
)

func TestAPITrackingSettings(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	const path = "/v1/consent/settings"
	audits := func() int {
		return b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'consent_settings.put' AND workspace_id = $1`, b.wsA)
	}
	res := b.call(t, http.MethodGet, path, "admin", nil)
	if res.Status != http.StatusOK || res.Body["tracking_mode"] != "opt_in" || res.Body["tracking_full_ip"] != false ||
		res.Body["soft_bounce_limit"] != 3.0 || res.Body["soft_bounce_window"] != "168h" {
		t.Fatalf("defaults: %d %s", res.Status, res.Raw)
	}
	// Reading the settings made the tracking purpose, ready to edit.
	if n := b.count(t, `SELECT count(*) FROM purposes WHERE workspace_id = $1 AND name = 'tracking' AND kind = 'tracking'`, b.wsA); n != 1 {
		t.Fatalf("%d tracking purposes after GET settings", n)
	}
	if n := b.count(t, `SELECT count(*) FROM purposes WHERE workspace_id = $1`, b.wsB); n != 0 {
		t.Fatalf("B got %d purposes from A's settings", n)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"unknown mode", map[string]any{"tracking_mode": "always"}, 422, "tracking_mode"},
		{"mode in capitals", map[string]any{"tracking_mode": "OPT_OUT"}, 422, "tracking_mode"},
		{"crlf mode", map[string]any{"tracking_mode": "opt_in\r\nX-Evil: 1"}, 422, "tracking_mode"},
		{"empty mode", map[string]any{"tracking_mode": ""}, 422, "tracking_mode"},
		{"script mode", map[string]any{"tracking_mode": "<script>alert(1)</script>"}, 422, "tracking_mode"},
		{"limit 0", map[string]any{"soft_bounce_limit": 0}, 422, "soft_bounce_limit"},
		{"limit 101", map[string]any{"soft_bounce_limit": 101}, 422, "soft_bounce_limit"},
		{"negative limit", map[string]any{"soft_bounce_limit": -3}, 422, "soft_bounce_limit"},
		{"limit as text", `{"soft_bounce_limit": "3"}`, 422, "soft_bounce_limit"},
		{"limit not whole", `{"soft_bounce_limit": 2.5}`, 422, "soft_bounce_limit"},
		{"limit overflows", `{"soft_bounce_limit": 99999999999999999999999}`, 422, "soft_bounce_limit"},
		{"window too short", map[string]any{"soft_bounce_window": "59m"}, 422, "soft_bounce_window"},
		{"window too long", map[string]any{"soft_bounce_window": "2161h"}, 422, "soft_bounce_window"},
		{"window in days", map[string]any{"soft_bounce_window": "7d"}, 422, "soft_bounce_window"},
		{"window negative", map[string]any{"soft_bounce_window": "-168h"}, 422, "soft_bounce_window"},
		{"window fraction of a second", map[string]any{"soft_bounce_window": "2h0.5s"}, 422, "soft_bounce_window"},
		{"window as number", `{"soft_bounce_window": 604800}`, 422, "soft_bounce_window"},
		{"window crlf", map[string]any{"soft_bounce_window": "168h\r\n"}, 422, "soft_bounce_window"},
		{"window huge", map[string]any{"soft_bounce_window": strings.Repeat("9", 200) + "h"}, 422, "soft_bounce_window"},
		{"full ip as text", `{"tracking_full_ip": "yes"}`, 422, "tracking_full_ip"},
		{"unknown field", map[string]any{"tracking": "on"}, 422, "tracking"},
		{"not json", `{"tracking_mode": opt_out}`, 400, ""},
		{"truncated", `{"tracking_mode": "opt_out"`, 400, ""},
		{"oversized", map[string]any{"privacy_url": "https://acme.example/" + strings.Repeat("a", apiMaxBody)}, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPut, path, "admin", tc.body).RequireProblem(t, tc.status, tc.field)
		})
	}
	if n := audits(); n != 0 {
		t.Fatalf("%d audit rows for refused changes", n)
	}
	b.call(t, http.MethodPut, path, "campaigns", map[string]any{"tracking_mode": "off"}).RequireProblem(t, http.StatusForbidden, "")

	res = b.call(t, http.MethodPut, path, "admin", map[string]any{"privacy_url": "https://acme.example/privacy",
		"tracking_mode": "opt_out", "tracking_full_ip": true, "soft_bounce_limit": 5, "soft_bounce_window": "36h30m"})
	if res.Status != http.StatusOK || res.Body["tracking_mode"] != "opt_out" || res.Body["tracking_full_ip"] != true ||
		res.Body["soft_bounce_limit"] != 5.0 || res.Body["soft_bounce_window"] != "36h30m0s" {
		t.Fatalf("put: %d %s", res.Status, res.Raw)
	}
	if got := b.call(t, http.MethodGet, path, "admin", nil); string(got.Raw) != string(res.Raw) {
		t.Fatalf("GET after PUT = %s, want %s", got.Raw, res.Raw)
	}
	var detail []byte
	if err := b.pool.QueryRow(t.Context(), `SELECT detail FROM audit_log WHERE action = 'consent_settings.put'
		AND workspace_id = $1 ORDER BY id DESC LIMIT 1`, b.wsA).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	var audit struct {
		TrackingMode     string         `json:"tracking_mode"`
		SoftBounceWindow string         `json:"soft_bounce_window"`
		Before           map[string]any `json:"before"`
	}
	if err := json.Unmarshal(detail, &audit); err != nil {
		t.Fatal(err)
	}
	if audit.TrackingMode != "opt_out" || audit.SoftBounceWindow != "36h30m0s" || audit.Before["tracking_mode"] != "opt_in" {
		t.Fatalf("audit detail %s", detail)
	}
	// The bounds themselves are accepted; omitted tracking and bounce fields go back to defaults.
	for _, tc := range []struct {
		body       map[string]any
		mode, win  string
		limit      float64
		fullIP     bool
		privacyURL string
	}{
		{map[string]any{"soft_bounce_limit": 1, "soft_bounce_window": "1h", "tracking_mode": "off"}, "off", "1h", 1, false, ""},
		{map[string]any{"soft_bounce_limit": 100, "soft_bounce_window": "2160h"}, "opt_in", "2160h", 100, false, ""},
		{map[string]any{}, "opt_in", "168h", 3, false, ""},
	} {
		res := b.call(t, http.MethodPut, path, "admin", tc.body)
		if res.Status != http.StatusOK || res.Body["tracking_mode"] != tc.mode || res.Body["soft_bounce_window"] != tc.win ||
			res.Body["soft_bounce_limit"] != tc.limit || res.Body["tracking_full_ip"] != tc.fullIP || res.Body["privacy_url"] != tc.privacyURL {
			t.Fatalf("put %v: %d %s", tc.body, res.Status, res.Raw)
		}
	}
	if n := audits(); n != 4 {
		t.Fatalf("%d audit rows for 4 changes", n)
	}
	// What TrackingPolicies reads is what the API wrote.
	b.call(t, http.MethodPut, path, "admin", map[string]any{"tracking_mode": "opt_out", "tracking_full_ip": true})
	pol, err := b.svc.TrackingPolicies(t.Context(), b.pool, []int64{b.wsA, b.wsB})
	if err != nil || pol[b.wsA] != (consent.TrackingPolicy{Mode: "opt_out", FullIP: true}) || pol[b.wsB] != (consent.TrackingPolicy{Mode: "opt_in"}) {
		t.Fatalf("policies %v %v", pol, err)
	}
}

func TestAPITrackingPurpose(t *testing.T) {
	t.Parallel()
	b := apiSetup(t)
	b.apiContacts(t) // news (notice v2), alice in A, bob in B
	// GET /v1/purposes/tracking makes it on first use.
	res := b.call(t, http.MethodGet, "/v1/purposes/tracking", "contacts", nil)
	if res.Status != http.StatusOK || res.Body["kind"] != "tracking" || res.Body["title"] != consent.TrackingDefaultTitle ||
		res.Body["notice"] != consent.TrackingDefaultNotice || res.Body["notice_version"] != 1.0 {
		t.Fatalf("get tracking: %d %s", res.Status, res.Raw)
	}
	res = b.call(t, http.MethodGet, "/v1/purposes", "contacts", nil)
	list, _ := res.Body["purposes"].([]any)
	kinds := map[string]any{}
	for _, p := range list {
		m := p.(map[string]any)
		kinds[m["name"].(string)] = m["kind"]
	}
	if len(kinds) != 2 || kinds["news"] != "marketing" || kinds["tracking"] != "tracking" {
		t.Fatalf("list: %s", res.Raw)
	}
	// Editing it through the purposes API: a new notice version, the kind kept.
	res = b.call(t, http.MethodPost, "/v1/purposes", "campaigns", map[string]string{"name": "tracking",
		"title": "Knowing what you read", "notice": "We see when you open our emails and which links you follow."})
	if res.Status != http.StatusOK || res.Body["kind"] != "tracking" || res.Body["notice_version"] != 2.0 {
		t.Fatalf("edit: %d %s", res.Status, res.Raw)
	}
	for _, tc := range []struct {
		name  string
		body  map[string]string
		field string
	}{
		{"tracking as marketing", map[string]string{"name": "tracking", "kind": "marketing", "title": "T", "notice": "n"}, "name"},
		{"another tracking purpose", map[string]string{"name": "pixels", "kind": "tracking", "title": "T", "notice": "n"}, "kind"},
		{"unknown kind", map[string]string{"name": "x", "kind": "spam", "title": "T", "notice": "n"}, "kind"},
		{"news as tracking", map[string]string{"name": "news", "kind": "tracking", "title": "T", "notice": "n"}, "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.call(t, http.MethodPost, "/v1/purposes", "campaigns", tc.body).RequireProblem(t, http.StatusUnprocessableEntity, tc.field)
		})
	}

	// The consents API grants and withdraws tracking like any purpose, with the same rules.
	b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "tracking", "action": "granted"}).RequireProblem(t, http.StatusUnprocessableEntity, "notice_version")
	b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "tracking", "action": "granted", "notice_version": 3}).RequireProblem(t, http.StatusUnprocessableEntity, "notice_version")
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{
		"purpose": "tracking", "action": "granted", "notice_version": 2, "source": "form", "ip": "203.0.113.9"})
	if res.Status != http.StatusCreated {
		t.Fatalf("grant: %d %s", res.Status, res.Raw)
	}
	alice := b.count(t, `SELECT id FROM contacts WHERE workspace_id = $1 AND external_id = 'crm-alice'`, b.wsA)
	allowed, err := b.svc.TrackingAllowed(t.Context(), b.pool, b.wsA, []int64{int64(alice)})
	if err != nil || !allowed[0] {
		t.Fatalf("after grant: %v %v", allowed, err)
	}
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contacts", map[string]any{"purpose": "tracking", "action": "withdrawn"})
	if res.Status != http.StatusCreated {
		t.Fatalf("withdraw: %d %s", res.Status, res.Raw)
	}
	if allowed, err := b.svc.TrackingAllowed(t.Context(), b.pool, b.wsA, []int64{int64(alice)}); err != nil || allowed[0] {
		t.Fatalf("after withdrawal: %v %v", allowed, err)
	}
	// B's key cannot reach A's contact; B's own contact gets B's own tracking purpose.
	b.call(t, http.MethodPost, "/v1/contacts/crm-alice/consents", "contactsB", map[string]any{
		"purpose": "tracking", "action": "withdrawn"}).RequireProblem(t, http.StatusNotFound, "")
	res = b.call(t, http.MethodPost, "/v1/contacts/crm-bob/consents", "contactsB", map[string]any{
		"purpose": "tracking", "action": "granted", "notice_version": 1})
	if res.Status != http.StatusCreated {
		t.Fatalf("B grant: %d %s", res.Status, res.Raw)
	}
	var bTitle string
	if err := b.pool.QueryRow(t.Context(), `SELECT title FROM purposes WHERE workspace_id = $1 AND name = 'tracking'`, b.wsB).Scan(&bTitle); err != nil || bTitle != consent.TrackingDefaultTitle {
		t.Fatalf("B's tracking purpose: %q %v", bTitle, err)
	}
}
