package campaigns_test

import (
	"strings"
	"testing"

	"herald/campaigns"
	"herald/consent"
)

func TestMessageIDRoundTrip(t *testing.T) {
	t.Parallel()
	keys := consent.DevKeys()
	other, err := consent.NewKeys("another-hash-key-0123456789", "1:another-token-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ campaign, recipient int64 }{
		{1, 1}, {7, 123456}, {99999, 1 << 40}, {1<<48 - 1, 1<<48 - 1},
	} {
		id := campaigns.MessageID(keys, tc.campaign, tc.recipient, "mid.example")
		if id != campaigns.MessageID(keys, tc.campaign, tc.recipient, "mid.example") {
			t.Fatalf("MessageID not deterministic for %v", tc)
		}
		if !strings.HasPrefix(id, "c.") || !strings.HasSuffix(id, "@mid.example") || len(id) != 34+len("@mid.example") {
			t.Fatalf("MessageID %q: unexpected shape", id)
		}
		for _, form := range []string{id, "<" + id + ">", " <" + id + "> ", strings.ToUpper(id[:34]) + id[34:]} {
			c, r, ok := campaigns.ParseMessageID(keys, form)
			if !ok || c != tc.campaign || r != tc.recipient {
				t.Fatalf("ParseMessageID(%q) = %d, %d, %v; want %d, %d", form, c, r, ok, tc.campaign, tc.recipient)
			}
		}
		if c, r, ok := campaigns.ParseMessageID(other, id); ok && c == tc.campaign && r == tc.recipient {
			t.Fatalf("another key read %q back", id)
		}
	}
	// Consecutive rows give unrelated ids: nothing of the counter shows.
	a := campaigns.MessageID(keys, 5, 100, "d")
	b := campaigns.MessageID(keys, 5, 101, "d")
	same := 0
	for i := 2; i < 34; i++ {
		if a[i] == b[i] {
			same++
		}
	}
	if same > 12 {
		t.Fatalf("ids of consecutive rows share %d of 32 hex digits: %s %s", same, a, b)
	}
}

func TestParseMessageIDRejects(t *testing.T) {
	t.Parallel()
	keys := consent.DevKeys()
	valid := campaigns.MessageID(keys, 3, 4, "d.example")
	for _, s := range []string{
		"", "c.@d", "c." + strings.Repeat("0", 32), "x." + valid[2:], valid[:33] + "@d.example",
		"c." + strings.Repeat("zz", 16) + "@d", "0123456789abcdef@d", "c." + valid[2:34] + "00@d",
		"c." + strings.Repeat("f", 32) + "@d", "<abc@example.com>", valid[:34],
	} {
		if c, r, ok := campaigns.ParseMessageID(keys, s); ok {
			t.Errorf("ParseMessageID(%q) = %d, %d, true", s, c, r)
		}
	}
}
