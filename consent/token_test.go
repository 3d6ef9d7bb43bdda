package consent_test

import (
	"encoding/base32"
	"errors"
	"strings"
	"testing"

	"herald/consent"
)

// tokenEncoding mirrors the token's wire form, so tests can alter the decoded bytes.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const (
	testHashKey = "test-hash-key-0123456789"
	oldSecret   = "old-token-secret-0123456789"
	newSecret   = "new-token-secret-0123456789"
)

func mustKeys(t testing.TB, ring string) *consent.Keys {
	t.Helper()
	k, err := consent.NewKeys(testHashKey, ring)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	k := mustKeys(t, "7:"+oldSecret)
	for _, r := range []consent.Recipient{
		{WorkspaceID: 1, ContactID: 1},
		{WorkspaceID: 1, ContactID: 2, PurposeID: 3},
		{WorkspaceID: 127, ContactID: 128, PurposeID: 16383},
		{WorkspaceID: 1 << 40, ContactID: 1<<62 - 1, PurposeID: 1 << 62},
	} {
		tok := k.Token(r)
		if strings.ToLower(tok) != tok || len(tok) > 80 {
			t.Errorf("%+v: token %q is not short lower-case base32", r, tok)
		}
		got, err := k.ParseToken(tok)
		if err != nil || got != r {
			t.Errorf("%+v: parsed %+v, %v", r, got, err)
		}
	}
}

func TestTokenKeyRotation(t *testing.T) {
	t.Parallel()
	r := consent.Recipient{WorkspaceID: 3, ContactID: 99, PurposeID: 4}
	old := mustKeys(t, "1:"+oldSecret)
	rotated := mustKeys(t, "2:"+newSecret+", 1:"+oldSecret) // the new key signs, the old still verifies
	retired := mustKeys(t, "2:"+newSecret)

	oldTok := old.Token(r)
	if got, err := rotated.ParseToken(oldTok); err != nil || got != r {
		t.Fatalf("a token of the old key after rotation: %+v, %v", got, err)
	}
	newTok := rotated.Token(r)
	if newTok == oldTok {
		t.Fatal("the rotated ring still signs with the old key")
	}
	if got, err := retired.ParseToken(newTok); err != nil || got != r {
		t.Fatalf("a token of the new key: %+v, %v", got, err)
	}
	if _, err := retired.ParseToken(oldTok); !errors.Is(err, consent.ErrBadToken) {
		t.Fatalf("a token of a removed key parses: %v", err)
	}
	if _, err := old.ParseToken(newTok); !errors.Is(err, consent.ErrBadToken) {
		t.Fatalf("a ring without the new key accepts its token: %v", err)
	}
	// Same key id, different secret: a forgery, not a rotation.
	if _, err := mustKeys(t, "1:"+newSecret).ParseToken(oldTok); !errors.Is(err, consent.ErrBadToken) {
		t.Fatalf("a token verifies under another secret with the same key id: %v", err)
	}
}

func TestTokenCaseFolding(t *testing.T) {
	t.Parallel()
	k := consent.DevKeys()
	r := consent.Recipient{WorkspaceID: 5, ContactID: 6, PurposeID: 7}
	tok := k.Token(r)
	mixed := []byte(tok)
	for i := range mixed {
		if i%2 == 0 {
			mixed[i] = strings.ToUpper(string(mixed[i]))[0]
		}
	}
	for _, s := range []string{strings.ToUpper(tok), string(mixed)} {
		if got, err := k.ParseToken(s); err != nil || got != r {
			t.Errorf("ParseToken(%q) = %+v, %v", s, got, err)
		}
	}
}

func TestTokenEveryBitFlipRejected(t *testing.T) {
	t.Parallel()
	k := consent.DevKeys()
	r := consent.Recipient{WorkspaceID: 12, ContactID: 3456, PurposeID: 78}
	raw, err := tokenEncoding.DecodeString(k.Token(r))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		b := append([]byte(nil), raw...)
		b[i/8] ^= 1 << (i % 8)
		if got, err := k.ParseToken(tokenEncoding.EncodeToString(b)); !errors.Is(err, consent.ErrBadToken) {
			t.Errorf("bit %d flipped: parsed %+v, %v", i, got, err)
		}
	}
	// Every other character at every position: rejected, except where the change only touches
	// the unused low bits of the last character, which decode to the very same token.
	tok := k.Token(r)
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range len(tok) {
		for _, c := range alphabet {
			if byte(c) == tok[i] {
				continue
			}
			s := tok[:i] + string(c) + tok[i+1:]
			got, err := k.ParseToken(s)
			if err == nil && (i != len(tok)-1 || got != r) {
				t.Errorf("position %d changed to %c: parsed %+v", i, c, got)
			}
		}
	}
	// Truncated, extended and re-versioned tokens.
	for _, s := range []string{tok[:len(tok)-1], tok[:len(tok)/2], tok + "a", tok + "aaaaaaaa", "", "x", strings.Repeat("a", 81)} {
		if _, err := k.ParseToken(s); !errors.Is(err, consent.ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v", s, err)
		}
	}
}

// FuzzParseToken checks that ParseToken never panics, and that whatever it accepts names a
// recipient whose freshly signed token parses back to the same recipient.
// TestTokenOneSpelling: the last base32 character carries bits beyond the token's bytes; a token
// with those bits changed decodes to the same bytes but is not the token Herald issued.
func TestTokenOneSpelling(t *testing.T) {
	t.Parallel()
	k := consent.DevKeys()
	tok := k.Token(consent.Recipient{WorkspaceID: 5, ContactID: 6, PurposeID: 7})
	accepted := 0
	for _, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		alt := tok[:len(tok)-1] + string(c)
		if _, err := k.ParseToken(alt); err == nil {
			accepted++
			if alt != tok {
				t.Errorf("ParseToken accepted %q, another spelling of %q", alt, tok)
			}
		}
	}
	if accepted != 1 {
		t.Errorf("%d spellings accepted, want exactly the issued one", accepted)
	}
}

func FuzzParseToken(f *testing.F) {
	k := consent.DevKeys()
	for _, r := range []consent.Recipient{{WorkspaceID: 1, ContactID: 1}, {WorkspaceID: 9, ContactID: 1 << 50, PurposeID: 3}} {
		tok := k.Token(r)
		f.Add(tok)
		f.Add(strings.ToUpper(tok))
		f.Add(tok[:len(tok)-2])
	}
	f.Add("")
	f.Add("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("unsubscribe+abc@example.com")
	f.Add("\x00\xff\u00e9=====")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := k.ParseToken(s)
		if err != nil {
			if !errors.Is(err, consent.ErrBadToken) {
				t.Fatalf("ParseToken(%q): unexpected error %v", s, err)
			}
			return
		}
		if r.WorkspaceID <= 0 || r.ContactID <= 0 || r.PurposeID < 0 {
			t.Fatalf("ParseToken(%q) accepted ids %+v", s, r)
		}
		if k.Token(r) != strings.ToLower(s) {
			t.Fatalf("ParseToken accepted %q, which is not the token %q it names", s, k.Token(r))
		}
		again, err := k.ParseToken(k.Token(r))
		if err != nil || again != r {
			t.Fatalf("ParseToken(%q) = %+v, but its re-encoding parses to %+v, %v", s, r, again, err)
		}
	})
}

// TestTokenGolden pins the unsubscribe token's wire format: these tokens were issued before
// Token was rebuilt on SignIDs, and links in mail already sent must keep working.
func TestTokenGolden(t *testing.T) {
	t.Parallel()
	dev := consent.DevKeys()
	k7 := mustKeys(t, "7:"+oldSecret)
	for _, g := range []struct {
		keys  *consent.Keys
		r     consent.Recipient
		token string
	}{
		{dev, consent.Recipient{WorkspaceID: 1, ContactID: 1}, "aeaqcaiah3cltsdqelqpfxqjqowotoor3y"},
		{k7, consent.Recipient{WorkspaceID: 1, ContactID: 1}, "aedqcaiapz5m65c7ofqnqjfngdsq7ape4q"},
		{dev, consent.Recipient{WorkspaceID: 5, ContactID: 6, PurposeID: 7}, "aeaqkbqhypm4hxyfm7rw7afrflelj4uaby"},
		{k7, consent.Recipient{WorkspaceID: 5, ContactID: 6, PurposeID: 7}, "aedqkbqhur4qdoewgj7dezdzlh6uulaaq4"},
		{dev, consent.Recipient{WorkspaceID: 127, ContactID: 128, PurposeID: 16383}, "aeax7aab757zhnncdkftx5rcykvlwmgvz26ke"},
		{k7, consent.Recipient{WorkspaceID: 127, ContactID: 128, PurposeID: 16383}, "aedx7aab7575vp6wa4g6q2ucnbofuq6ogvnys"},
		{dev, consent.Recipient{WorkspaceID: 1 << 40, ContactID: 1<<62 - 1, PurposeID: 1 << 62},
			"aeaybaeaqcacb77777777777747ybaeaqcaibaeaic3yohn5zol3zmnv3xyg7xatpilq"},
		{k7, consent.Recipient{WorkspaceID: 1 << 40, ContactID: 1<<62 - 1, PurposeID: 1 << 62},
			"aedybaeaqcacb77777777777747ybaeaqcaibaeaian7nycur57ggn2zx2x3hclcfpda"},
	} {
		if got := g.keys.Token(g.r); got != g.token {
			t.Errorf("Token(%+v) = %q, want the issued %q", g.r, got, g.token)
		}
		if got, err := g.keys.ParseToken(g.token); err != nil || got != g.r {
			t.Errorf("ParseToken(%q) = %+v, %v; want %+v", g.token, got, err, g.r)
		}
	}
}

// TestSignIDsDomains: a token is accepted only for the domain and the number of ids it was
// signed with, so a view-online token is never an unsubscribe token, nor the reverse.
func TestSignIDsDomains(t *testing.T) {
	t.Parallel()
	k := consent.DevKeys()
	const view = "herald/view/v1"
	ids := []int64{5, 6, 7}
	tok := k.SignIDs(view, ids...)
	got, err := k.ParseIDs(view, tok, 3)
	if err != nil || len(got) != 3 || got[0] != 5 || got[1] != 6 || got[2] != 7 {
		t.Fatalf("ParseIDs = %v, %v", got, err)
	}
	if _, err := k.ParseToken(tok); !errors.Is(err, consent.ErrBadToken) {
		t.Errorf("a view token parses as an unsubscribe token: %v", err)
	}
	unsub := k.Token(consent.Recipient{WorkspaceID: 5, ContactID: 6, PurposeID: 7})
	if unsub == tok {
		t.Fatal("the same ids give the same token in two domains")
	}
	if _, err := k.ParseIDs(view, unsub, 3); !errors.Is(err, consent.ErrBadToken) {
		t.Errorf("an unsubscribe token parses as a view token: %v", err)
	}
	// The unsubscribe domain through the generic API is the unsubscribe token itself.
	if got := k.SignIDs("herald/unsubscribe/v1", ids...); got != unsub {
		t.Errorf("SignIDs(unsubscribe domain) = %q, Token = %q", got, unsub)
	}
	for _, tc := range []struct {
		domain string
		n      int
	}{
		{"herald/view/v2", 3}, {"herald/view/v", 3}, {"herald/view/v1x", 3}, {view, 2}, {view, 4}, {view, 1},
	} {
		if got, err := k.ParseIDs(tc.domain, tok, tc.n); !errors.Is(err, consent.ErrBadToken) {
			t.Errorf("ParseIDs(%q, n=%d) = %v, %v", tc.domain, tc.n, got, err)
		}
	}
	// Rotation works as for unsubscribe tokens.
	old := mustKeys(t, "1:"+oldSecret)
	rotated := mustKeys(t, "2:"+newSecret+",1:"+oldSecret)
	oldTok := old.SignIDs(view, ids...)
	if got, err := rotated.ParseIDs(view, oldTok, 3); err != nil || got[2] != 7 {
		t.Errorf("an old key's view token after rotation: %v, %v", got, err)
	}
	if _, err := mustKeys(t, "2:"+newSecret).ParseIDs(view, oldTok, 3); !errors.Is(err, consent.ErrBadToken) {
		t.Errorf("a retired key's view token parses: %v", err)
	}
	// Every bit flip of the raw token is refused.
	raw, err := tokenEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		b := append([]byte(nil), raw...)
		b[i/8] ^= 1 << (i % 8)
		if got, err := k.ParseIDs(view, tokenEncoding.EncodeToString(b), 3); !errors.Is(err, consent.ErrBadToken) {
			t.Errorf("bit %d flipped: parsed %v, %v", i, got, err)
		}
	}
}
