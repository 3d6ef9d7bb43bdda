package contacts_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"herald/internal/contacts"
)

func TestNormalizeAddress(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	// label63 is a maximal DNS label; four of them plus ".com" make a 259-octet domain.
	label63 := long(63)
	for _, tc := range []struct {
		name string
		in   string
		want string // "" means the address must be rejected
	}{
		{"plain", "user@example.com", "user@example.com"},
		{"upper-case domain lowered, local part kept", "User.Name@Example.COM", "User.Name@example.com"},
		{"leading and trailing spaces trimmed", "  user@example.com \t", "user@example.com"},
		{"plus tag and subdomains", "a+tag@mail.example.co.uk", "a+tag@mail.example.co.uk"},
		{"every atext character", "!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com"},
		{"IDN domain to punycode", "Ü@Bücher.example", "Ü@xn--bcher-kva.example"},
		{"IDN domain upper-case", "user@BÜCHER.example", "user@xn--bcher-kva.example"},
		{"IDN Cyrillic", "user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"},
		{"IDN Han with unicode local part", "用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
		{"punycode input kept", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"},
		{"full-width domain mapped", "user@ｅｘａｍｐｌｅ.com", "user@example.com"},
		// Decision: non-ASCII local parts are accepted as given (RFC 6531 SMTPUTF8), case kept.
		{"unicode local part accepted", "José@example.com", "José@example.com"},
		{"local part of 64 octets", long(64) + "@example.com", long(64) + "@example.com"},

		{"CRLF header injection", "a@b.com\r\nBcc: x@y.com", ""},
		{"trailing CRLF not trimmed", "a@b.com\r\n", ""},
		{"LF inside", "a@b.com\nx", ""},
		{"NUL", "a@b.com\x00", ""},
		{"DEL", "a\x7f@b.com", ""},
		{"zero-width space", "a\u200b@b.com", ""},
		{"line separator", "a@b.com\u2028", ""},
		{"display name", "A <a@b.com>", ""},
		{"quoted display name", `"A" <a@b.com>`, ""},
		{"angle brackets only", "<a@b.com>", ""},
		{"space inside", "a b@c.com", ""},
		{"quoted local part", `"a b"@c.com`, ""},
		{"missing @", "ab.com", ""},
		{"two @", "a@b@c.com", ""},
		{"empty local part", "@b.com", ""},
		{"empty domain", "a@", ""},
		{"empty", "", ""},
		{"only spaces", "   ", ""},
		{"trailing dot in domain", "a@b.com.", ""},
		{"empty label", "a@b..com", ""},
		{"leading dot in local part", ".a@b.com", ""},
		{"trailing dot in local part", "a.@b.com", ""},
		{"double dot in local part", "a..b@c.com", ""},
		{"comment in local part", "a(c)@b.com", ""},
		{"overlong local part", long(65) + "@example.com", ""},
		{"overlong address", long(64) + "@" + strings.Join([]string{label63, label63, label63, label63}, ".") + ".com", ""},
		{"overlong label", "a@" + long(64) + ".com", ""},
		{"domain without dot", "a@localhost", ""},
		{"IP literal", "a@[127.0.0.1]", ""},
		{"IP address domain", "a@192.168.0.1", ""},
		{"label starts with hyphen", "a@-b.com", ""},
		{"label ends with hyphen", "a@b-.com", ""},
		{"underscore in domain", "a@ex_ample.com", ""},
		{"invalid punycode", "a@xn--zz.com", ""},
		{"punycode of plain ASCII", "a@xn--abc-.com", ""},
		{"invalid UTF-8", "a\xff@b.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := contacts.NormalizeAddress(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("NormalizeAddress(%q) = %q, want an error", tc.in, got)
				}
				if !errors.Is(err, contacts.ErrInvalidAddress) {
					t.Fatalf("error %v does not match ErrInvalidAddress", err)
				}
				if strings.Contains(err.Error(), "@b.") || strings.Contains(err.Error(), "example") {
					t.Fatalf("error %q echoes the address", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if again, err := contacts.NormalizeAddress(got); err != nil || again != got {
				t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{
		"user@example.com", "Ü@Bücher.example", "a@b.com\r\nBcc: x@y.com", "A <a@b.com>",
		"a@b@c.com", "a@b.com.", " a@b.com ", "用户@例子.广告", "a@xn--bcher-kva.example", `"q"@b.com`,
		"a@ｅｘａｍｐｌｅ.com", "a@b..com", strings.Repeat("x", 70) + "@y.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := contacts.NormalizeAddress(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error %v with output %q", err, got)
			}
			return
		}
		if strings.ContainsAny(got, "\r\n\x00 \t<>\"") || strings.Count(got, "@") != 1 ||
			!utf8.ValidString(got) || len(got) > 254 {
			t.Fatalf("NormalizeAddress(%q) = %q: not a bare single-@ address", s, got)
		}
		again, err := contacts.NormalizeAddress(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeAddress(%q) = %q, but that normalises to %q, %v", s, got, again, err)
		}
	})
}
