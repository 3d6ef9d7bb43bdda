package campaigns_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"herald/campaigns"
	"herald/consent"
)

// TestCampaignRefusesTrackingPurpose: the tracking purpose governs the pixel and tracked links,
// not what email a contact receives, so no campaign is created, changed to or scheduled for it.
func TestCampaignRefusesTrackingPurpose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := cSetup(t)
	b.list(t, b.ws, "all", b.contacts(t, b.ws, "c", 2, ""))
	if _, err := consent.EnsureTrackingPurpose(ctx, b.pool, b.ws); err != nil {
		t.Fatal(err)
	}
	create := map[string]any{"name": "Pixel party", "purpose": consent.TrackingPurpose, "template": "promo", "sender": "main",
		"audience": map[string]any{"lists": []string{"all"}}}
	p := b.do(t, "POST", "/v1/campaigns", create).RequireProblem(t, 422, "purpose")
	if !strings.Contains(p.Detail, "tracking purpose") || !strings.Contains(p.Detail, "marketing purpose") {
		t.Fatalf("detail %q does not say why", p.Detail)
	}
	create["purpose"] = "news"
	res := b.do(t, "POST", "/v1/campaigns", create)
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Raw)
	}
	id := int64(res.Body["id"].(float64))
	path := fmt.Sprintf("/v1/campaigns/%d", id)
	b.do(t, "PATCH", path, map[string]any{"purpose": consent.TrackingPurpose}).RequireProblem(t, 422, "purpose")
	// A draft that names the tracking purpose anyway (written before this check existed) is
	// refused when scheduled.
	if _, err := b.pool.Exec(ctx, `UPDATE campaigns SET purpose = 'tracking' WHERE workspace_id = $1`, b.ws); err != nil {
		t.Fatal(err)
	}
	b.do(t, "POST", path+"/schedule", nil).RequireProblem(t, 422, "purpose")
	if c := b.do(t, "GET", path, nil); c.Body["status"] != "draft" {
		t.Fatalf("status after refused schedule: %s", c.Raw)
	}
	if n := b.jobCount(t, campaigns.FanOutArgs{}.Kind(), id); n != 0 {
		t.Fatalf("%d fan-out jobs", n)
	}
}
