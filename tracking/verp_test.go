package tracking

import (
	"strings"
	"testing"

	"herald/consent"
)

func TestVERP(t *testing.T) {
	t.Parallel()
	v := VERP{Keys: consent.DevKeys(), Domain: "bounce.herald.example"}
	for _, tc := range []struct {
		ws   int64
		kind int
		id   int64
	}{{1, VERPRecipient, 1}, {4321, VERPMessage, 987654321}, {1 << 20, VERPRecipient, 1 << 40}} {
		a := v.Address(tc.ws, tc.kind, tc.id)
		local := a[:strings.IndexByte(a, '@')]
		if len(local) > 64 {
			t.Errorf("local part of %q is %d octets, want at most 64 (RFC 5321)", a, len(local))
		}
		got, ok := v.Parse(a)
		if !ok || got != (BounceTarget{WorkspaceID: tc.ws, Kind: tc.kind, ID: tc.id}) {
			t.Errorf("Parse(%q) = %+v, %v", a, got, ok)
		}
		if _, ok := v.Parse(strings.ToUpper(a)); !ok {
			t.Errorf("Parse of the upper-cased %q failed", a)
		}
	}
	a := v.MessageAddress(7, 99)
	tok := a[len("bounces+"):strings.IndexByte(a, '@')]
	for _, bad := range []string{
		"", "bounces+@bounce.herald.example", "bounces+" + tok + "@other.example", "unsubscribe+" + tok + "@bounce.herald.example",
		"bounces+" + tok[:len(tok)-2] + "@bounce.herald.example", "bounces+" + tok + "x@bounce.herald.example",
		"bounces+" + consent.DevKeys().SignIDs("herald/webhook/v1", 7, 2, 99) + "@bounce.herald.example",
		"bounces+" + consent.DevKeys().SignIDs(verpTokenDomain, 7, 3, 99) + "@bounce.herald.example",
		"bounces+" + consent.DevKeys().SignIDs(verpTokenDomain, 0, 2, 99) + "@bounce.herald.example",
	} {
		if got, ok := v.Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v, accepted", bad, got)
		}
	}
}
