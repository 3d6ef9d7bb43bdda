package campaigns_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/workspace"
)

func (b *cBundle) count(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSendersAPI(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	body := map[string]any{"name": "promo", "from_address": "  News@ACME.Example ", "from_name": "Acme News",
		"reply_to": "help@acme.example", "postal_address": "Acme Ltd\r\n  1 Main Street \r\nSpringfield"}
	res := b.do(t, "POST", "/v1/senders", body)
	if res.Status != http.StatusCreated || res.Body["from_address"] != "News@acme.example" ||
		res.Body["postal_address"] != "Acme Ltd\n1 Main Street\nSpringfield" || res.Header.Get("Location") != "/v1/senders/promo" {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	b.do(t, "POST", "/v1/senders", body).RequireProblem(t, http.StatusConflict, "")
	if res := b.do(t, "GET", "/v1/senders/promo", nil); res.Status != 200 || res.Body["from_name"] != "Acme News" {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	body["from_name"] = "Acme"
	if res := b.do(t, "PUT", "/v1/senders/promo", body); res.Status != 200 || res.Body["from_name"] != "Acme" {
		t.Fatalf("put existing: %d %s", res.Status, res.Raw)
	}
	delete(body, "name")
	if res := b.do(t, "PUT", "/v1/senders/other", body); res.Status != 201 || res.Body["name"] != "other" {
		t.Fatalf("put new: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, "GET", "/v1/senders", nil)
	if list, _ := res.Body["senders"].([]any); res.Status != 200 || len(list) != 3 { // main (setup), other, promo
		t.Fatalf("list: %d %s", res.Status, res.Raw)
	}
	b.do(t, "GET", "/v1/senders/nobody", nil).RequireProblem(t, http.StatusNotFound, "")

	stored := b.count(t, "senders")
	valid := func(change map[string]any) map[string]any {
		m := map[string]any{"name": "x", "from_address": "a@acme.example", "postal_address": "1 Main St"}
		for k, v := range change {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"name with capitals", valid(map[string]any{"name": "Main Sender"}), "name"},
		{"header injection in the address", valid(map[string]any{"from_address": "a@acme.example\r\nBcc: x@evil.example"}), "from_address"},
		{"display name in the address", valid(map[string]any{"from_address": "Acme <a@acme.example>"}), "from_address"},
		{"CRLF in from_name", valid(map[string]any{"from_name": "Acme\r\nBcc: x@evil.example"}), "from_name"},
		{"bad reply_to", valid(map[string]any{"reply_to": "nobody"}), "reply_to"},
		{"no postal address", valid(map[string]any{"postal_address": nil}), "postal_address"},
		{"blank postal address", valid(map[string]any{"postal_address": " \n "}), "postal_address"},
		{"long postal address", valid(map[string]any{"postal_address": strings.Repeat("a", 501)}), "postal_address"},
		{"control character in the address", valid(map[string]any{"postal_address": "1 Main St\x00"}), "postal_address"},
		{"lone CR in the address", valid(map[string]any{"postal_address": "1 Main St\rX"}), "postal_address"},
		{"unknown field", valid(map[string]any{"admin": true}), "admin"},
	} {
		res := b.do(t, "POST", "/v1/senders", tc.body)
		if res.Status != 422 {
			t.Errorf("%s: %d %s", tc.name, res.Status, res.Raw)
			continue
		}
		res.RequireProblem(t, 422, tc.field)
	}
	b.do(t, "POST", "/v1/senders", `{"name":"x","postal_address":"`+strings.Repeat("a", 9000)+`"}`).RequireProblem(t, 413, "")
	b.do(t, "PUT", "/v1/senders/promo", valid(map[string]any{"name": "other"})).RequireProblem(t, 422, "name")
	if n := b.count(t, "senders"); n != stored {
		t.Fatalf("refused requests stored senders: %d, was %d", n, stored)
	}

	// Another workspace sees none of them; a key without campaigns:write is refused.
	other := b.workspace(t, "other")
	key, _ := workspace.CreateKey(context.Background(), b.pool, other, []string{workspace.ScopeCampaignsWrite})
	b.do(t, "GET", "/v1/senders/promo", nil, key).RequireProblem(t, http.StatusNotFound, "")
	if res := b.do(t, "GET", "/v1/senders", nil, key); res.Status != 200 || len(res.Body["senders"].([]any)) != 0 {
		t.Fatalf("other workspace's list: %s", res.Raw)
	}
	sendOnly, _ := workspace.CreateKey(context.Background(), b.pool, b.ws, []string{workspace.ScopeMessagesSend})
	b.do(t, "GET", "/v1/senders", nil, sendOnly).RequireProblem(t, http.StatusForbidden, "")
	b.do(t, "GET", "/v1/campaigns", nil, sendOnly).RequireProblem(t, http.StatusForbidden, "")
}

// TestCampaignsAPI walks a campaign through the API: create (the latest template version, then
// fixed), list by cursor, patch the draft, schedule, refused patch (409 with the state), pause,
// resume, cancel, stats.
func TestCampaignsAPI(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 3, ""))
	b.template(t, b.ws, "promo", marketingHTML+"<p>v2</p>")
	create := map[string]any{"name": "Winter sale", "purpose": "news", "template": "promo", "sender": "main",
		"audience": map[string]any{"lists": []string{"all"}}, "throttle": map[string]any{"per_second": 100, "per_domain": 5}}
	res := b.do(t, "POST", "/v1/campaigns", create)
	if res.Status != 201 || res.Body["status"] != "draft" || res.Body["template_version"] != 2.0 {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	id := int64(res.Body["id"].(float64))
	path := fmt.Sprintf("/v1/campaigns/%d", id)
	if res.Header.Get("Location") != path {
		t.Fatalf("Location %q", res.Header.Get("Location"))
	}
	b.template(t, b.ws, "promo", marketingHTML+"<p>v3</p>")
	if res := b.do(t, "GET", path, nil); res.Status != 200 || res.Body["template_version"] != 2.0 ||
		res.Body["schedule"].(map[string]any)["kind"] != "now" {
		t.Fatalf("get: %d %s", res.Status, res.Raw)
	}
	for range 2 {
		b.do(t, "POST", "/v1/campaigns", create)
	}
	res = b.do(t, "GET", "/v1/campaigns?limit=2", nil)
	first, _ := res.Body["campaigns"].([]any)
	cursor, _ := res.Body["next_cursor"].(string)
	if res.Status != 200 || len(first) != 2 || cursor == "" {
		t.Fatalf("list: %d %s", res.Status, res.Raw)
	}
	res = b.do(t, "GET", "/v1/campaigns?limit=2&cursor="+cursor, nil)
	if rest, _ := res.Body["campaigns"].([]any); len(rest) != 1 || res.Body["next_cursor"] != nil ||
		rest[0].(map[string]any)["id"].(float64) != float64(id) {
		t.Fatalf("second page: %s", res.Raw)
	}
	b.do(t, "GET", "/v1/campaigns?cursor=abc", nil).RequireProblem(t, 422, "cursor")
	b.do(t, "GET", "/v1/campaigns?limit=1000", nil).RequireProblem(t, 422, "limit")

	if res := b.do(t, "PATCH", path, map[string]any{"name": "Winter sale, final"}); res.Status != 200 || res.Body["name"] != "Winter sale, final" {
		t.Fatalf("patch: %d %s", res.Status, res.Raw)
	}
	if res := b.do(t, "POST", path+"/schedule", nil); res.Status != 200 || res.Body["status"] != "scheduled" {
		t.Fatalf("schedule: %d %s", res.Status, res.Raw)
	}
	if n := b.jobCount(t, "campaigns.fan_out", id); n != 1 {
		t.Fatalf("%d fan-out jobs after scheduling", n)
	}
	res = b.do(t, "PATCH", path, map[string]any{"name": "changed"})
	res.RequireProblem(t, http.StatusConflict, "")
	if res.Body["campaign_status"] != "scheduled" {
		t.Fatalf("409 without the state: %s", res.Raw)
	}
	for _, step := range []struct{ action, status string }{{"pause", "paused"}, {"resume", "scheduled"}, {"cancel", "cancelled"}} {
		if res := b.do(t, "POST", path+"/"+step.action, nil); res.Status != 200 || res.Body["status"] != step.status {
			t.Fatalf("%s: %d %s", step.action, res.Status, res.Raw)
		}
	}
	res = b.do(t, "POST", path+"/resume", nil)
	res.RequireProblem(t, http.StatusConflict, "")
	if res.Body["campaign_status"] != "cancelled" {
		t.Fatalf("409 body %s", res.Raw)
	}
	if res := b.do(t, "GET", path+"/stats", nil); res.Status != 200 || res.Body["status"] != "cancelled" || res.Body["eta_seconds"] != nil {
		t.Fatalf("stats: %d %s", res.Status, res.Raw)
	}
}

// TestCampaignsHostile: every bad input is a 4xx problem naming the field, and nothing is
// stored; another workspace's campaign does not exist.
func TestCampaignsHostile(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 1, ""))
	past := b.now.Add(-time.Minute).Format(time.RFC3339)
	yesterday := b.now.AddDate(0, 0, -1).Format("2006-01-02")
	today := b.now.Format("2006-01-02") // 00:00 today has begun in UTC+14 for sure
	valid := func(change map[string]any) map[string]any {
		m := map[string]any{"name": "Sale", "purpose": "news", "template": "promo", "sender": "main",
			"audience": map[string]any{"lists": []string{"all"}}}
		for k, v := range change {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	sched := func(s map[string]any) map[string]any { return valid(map[string]any{"schedule": s}) }
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"CRLF in name", valid(map[string]any{"name": "Sale\r\nX-Injected: 1"}), "name"},
		{"script in name", valid(map[string]any{"name": "<script>alert(1)</script>"}), "name"},
		{"empty name", valid(map[string]any{"name": "  "}), "name"},
		{"no audience", valid(map[string]any{"audience": nil}), "audience"},
		{"unknown purpose", valid(map[string]any{"purpose": "spam"}), "purpose"},
		{"malformed purpose", valid(map[string]any{"purpose": "News\r\n"}), "purpose"},
		{"unknown template", valid(map[string]any{"template": "nope"}), "template"},
		{"template path", valid(map[string]any{"template": "../promo"}), "template"},
		{"unknown template version", valid(map[string]any{"template_version": 9}), "template_version"},
		{"negative template version", valid(map[string]any{"template_version": -1}), "template_version"},
		{"unknown sender", valid(map[string]any{"sender": "ghost"}), "sender"},
		{"unknown list", valid(map[string]any{"audience": map[string]any{"lists": []string{"nope"}}}), "audience.lists"},
		{"empty audience", valid(map[string]any{"audience": map[string]any{}}), "audience.lists"},
		{"unknown audience field", valid(map[string]any{"audience": map[string]any{"sql": "1=1"}}), "sql"},
		{"bad kind", sched(map[string]any{"kind": "later"}), "schedule.kind"},
		{"at missing", sched(map[string]any{"kind": "at"}), "schedule.at"},
		{"at in the past", sched(map[string]any{"kind": "at", "at": past}), "schedule.at"},
		{"at not a time", sched(map[string]any{"kind": "at", "at": "tomorrow"}), ""},
		{"bad time zone", sched(map[string]any{"kind": "now", "fallback_timezone": "Mars/Olympus"}), "schedule.fallback_timezone"},
		{"Local time zone", sched(map[string]any{"kind": "now", "fallback_timezone": "Local"}), "schedule.fallback_timezone"},
		{"time zone path", sched(map[string]any{"kind": "now", "fallback_timezone": "../../etc/passwd"}), "schedule.fallback_timezone"},
		{"bad local_time", sched(map[string]any{"kind": "local_time", "local_date": "2030-01-01", "local_time": "25:00"}), "schedule.local_time"},
		{"bad local_date", sched(map[string]any{"kind": "local_time", "local_date": "2030-02-30", "local_time": "09:00"}), "schedule.local_date"},
		{"local time in the past", sched(map[string]any{"kind": "local_time", "local_date": yesterday, "local_time": "09:00"}), "schedule.local_time"},
		{"local time begun in UTC+14", sched(map[string]any{"kind": "local_time", "local_date": today, "local_time": "00:00"}), "schedule.local_time"},
		{"now with a time", sched(map[string]any{"kind": "now", "at": past}), "schedule.kind"},
		{"negative throttle", valid(map[string]any{"throttle": map[string]any{"per_second": -1}}), "throttle.per_second"},
		{"huge throttle", valid(map[string]any{"throttle": map[string]any{"per_domain": 1 << 40}}), "throttle.per_domain"},
		{"wrong type", valid(map[string]any{"name": 7}), "name"},
		{"unknown field", valid(map[string]any{"status": "sent"}), "status"},
	} {
		res := b.do(t, "POST", "/v1/campaigns", tc.body)
		if res.Status/100 != 4 {
			t.Errorf("%s: %d %s", tc.name, res.Status, res.Raw)
			continue
		}
		if tc.field != "" {
			if res.Status != 422 {
				t.Errorf("%s: %d %s", tc.name, res.Status, res.Raw)
				continue
			}
			res.RequireProblem(t, 422, tc.field)
		}
	}
	b.do(t, "POST", "/v1/campaigns", valid(map[string]any{"name": strings.Repeat("a", 9000)})).RequireProblem(t, 413, "")
	b.do(t, "POST", "/v1/campaigns", `{"name":`).RequireProblem(t, 400, "")
	if n := b.count(t, "campaigns"); n != 0 {
		t.Fatalf("refused requests stored %d campaigns", n)
	}

	// Another workspace's campaign: 404 for every route, and it stays as it was.
	other := b.workspace(t, "other")
	b.purpose(t, other, "news")
	b.template(t, other, "promo", marketingHTML)
	b.sender(t, other, "main")
	b.list(t, other, "all", b.contacts(t, other, "o", 1, ""))
	theirs := b.campaign(t, other, campaigns.CampaignInput{})
	path := fmt.Sprintf("/v1/campaigns/%d", theirs.ID)
	b.do(t, "GET", path, nil).RequireProblem(t, 404, "")
	b.do(t, "GET", path+"/stats", nil).RequireProblem(t, 404, "")
	b.do(t, "PATCH", path, map[string]any{"name": "mine"}).RequireProblem(t, 404, "")
	for _, action := range []string{"schedule", "pause", "resume", "cancel"} {
		b.do(t, "POST", path+"/"+action, nil).RequireProblem(t, 404, "")
	}
	for _, bad := range []string{"abc", "0", "-1", "99999999999999999999"} {
		b.do(t, "GET", "/v1/campaigns/"+bad, nil).RequireProblem(t, 404, "")
	}
	if c := b.status(t, theirs.ID); c.Status != "draft" || c.Name != theirs.Name {
		t.Fatalf("another workspace changed the campaign: %+v", c)
	}
	// A campaign cannot name another workspace's template, sender or list either.
	b.template(t, other, "theirs", marketingHTML)
	b.do(t, "POST", "/v1/campaigns", valid(map[string]any{"template": "theirs"})).RequireProblem(t, 422, "template")
	b.sender(t, other, "their-sender")
	b.do(t, "POST", "/v1/campaigns", valid(map[string]any{"sender": "their-sender"})).RequireProblem(t, 422, "sender")
	b.list(t, other, "their-list", nil)
	b.do(t, "POST", "/v1/campaigns", valid(map[string]any{"audience": map[string]any{"lists": []string{"their-list"}}})).
		RequireProblem(t, 422, "audience.lists")

	// Scheduling a template that breaks the marketing rule is a 422 saying what is missing.
	b.template(t, b.ws, "plain", `<p>Hello</p>`)
	res := b.do(t, "POST", "/v1/campaigns", valid(map[string]any{"template": "plain"}))
	p := b.do(t, "POST", fmt.Sprintf("/v1/campaigns/%d/schedule", int64(res.Body["id"].(float64))), nil).RequireProblem(t, 422, "template")
	if !strings.Contains(p.Detail, "the template lacks the unsubscribe link and the postal address") {
		t.Fatalf("detail %q", p.Detail)
	}
}

// TestCampaignStats: the counts by status, suppressions by reason, progress, rate and ETA.
func TestCampaignStats(t *testing.T) {
	t.Parallel()
	b := cSetup(t)
	ctx := context.Background()
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 12, ""))
	for i, reason := range []string{consent.ReasonHardBounce, consent.ReasonHardBounce, consent.ReasonComplaint} {
		if _, err := b.svc.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.ws,
			Address: fmt.Sprintf("c-%d@example.com", i+1), Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	c := b.scheduled(t, campaigns.CampaignInput{})
	if err := b.fanOut().Work(ctx, job(campaigns.FanOutArgs{CampaignID: c.ID})); err != nil {
		t.Fatal(err)
	}
	// Of the 9 open: 3 sent within the minute, 1 sent long ago, 1 failed, 1 deferred, 1 sending, 2 queued.
	_, err := b.pool.Exec(ctx, `
		WITH r AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM campaign_recipients
			WHERE campaign_id = $1 AND status = 'queued')
		UPDATE campaign_recipients cr SET
			status = CASE WHEN n <= 4 THEN 'sent' WHEN n = 5 THEN 'failed' WHEN n = 6 THEN 'deferred'
				WHEN n = 7 THEN 'sending' ELSE 'queued' END,
			sent_at = CASE WHEN n <= 3 THEN $2::timestamptz - interval '10 seconds' WHEN n = 4 THEN $2::timestamptz - interval '1 hour' END
		FROM r WHERE r.id = cr.id`, c.ID, b.now)
	if err != nil {
		t.Fatal(err)
	}
	res := b.do(t, "GET", fmt.Sprintf("/v1/campaigns/%d/stats", c.ID), nil)
	if res.Status != 200 {
		t.Fatalf("stats: %d %s", res.Status, res.Raw)
	}
	want := map[string]any{"status": "sending", "audience_size": 12.0, "fanout_done": true, "queued": 2.0, "sending": 1.0,
		"sent": 4.0, "deferred": 1.0, "failed": 1.0, "cancelled": 0.0, "rate_per_second": 0.05,
		"progress": 8.0 / 12, "eta_seconds": 4 / 0.05}
	for k, v := range want {
		if got := res.Body[k]; fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if s := res.Body["suppressed"].(map[string]any); s["hard_bounce"] != 2.0 || s["complaint"] != 1.0 || len(s) != 2 {
		t.Errorf("suppressed = %v", s)
	}
}
