package mailer

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	gomail "github.com/wneessen/go-mail"
)

// checkPlainAddress: what plainAddress accepts, net/mail parses to itself with no name, and
// formats as "<s>" (the short cuts of parseMailAddress and appendPath).
func checkPlainAddress(t *testing.T, s string) {
	t.Helper()
	if !plainAddress(s) {
		return
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		t.Errorf("plainAddress(%q) but ParseAddress gives %+v, %v", s, a, err)
		return
	}
	if got := (&mail.Address{Address: s}).String(); got != "<"+s+">" {
		t.Errorf("plainAddress(%q) but net/mail formats it %q", s, got)
	}
}

// TestPlainAddress tries every byte in every position of short addresses, and addresses that
// must not count as plain.
func TestPlainAddress(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := string(rune(c))
		if c >= 0x80 {
			b = string([]byte{byte(c)})
		}
		for _, s := range []string{b + "a@b.c", "a" + b + "b@c.d", "a" + b + "@b.c", "a@" + b + "b.c", "a@b" + b + "c.d",
			"a@b.c" + b, "a." + b + "@b", "a@b." + b} {
			checkPlainAddress(t, s)
		}
	}
	for _, s := range []string{"u1@d7.example", "b+3.1042.sig@bounce.herald.example", "o'brien+x@example.com",
		"a!#$%&'*+-/=?^_`{|}~z@example.com"} {
		if !plainAddress(s) {
			t.Errorf("plainAddress(%q) = false", s)
		}
		checkPlainAddress(t, s)
	}
	for _, s := range []string{"", "@", "a@", "@b", "a@@b", ".a@b", "a.@b", "a..b@c", "a@b..c", "a@.b", "a@b.",
		`"a b"@c`, "a b@c", "Name <a@b>", "a@[127.0.0.1]", "zoë@example.com", "a@exämple.com", "a@b (comment)",
		"a\r\n@b", " a@b", "a@b "} {
		if plainAddress(s) {
			t.Errorf("plainAddress(%q) = true", s)
		}
	}
}

func FuzzPlainAddress(f *testing.F) {
	for _, s := range []string{"u1@d7.example", "a..b@c", `"x"@y`, "a@b.c."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkPlainAddress(t, s) })
}

// TestListUnsubscribeValue: the value compose stores is go-mail's SetListUnsubscribe's, or it
// leaves the URIs to go-mail.
func TestListUnsubscribeValue(t *testing.T) {
	uris := []string{"https://h.example/u/tok", "mailto:unsubscribe+tok@in.example?subject=unsubscribe", "", " ", " x", "x ",
		"<x>", "<x", "x>", "\tx", "x\u00a0", "a, b", "http://127.0.0.1:8080/u/t"}
	for _, link := range uris {
		for _, mailto := range uris {
			v, ok := listUnsubscribeValue(link, mailto)
			if !ok {
				continue
			}
			msg := gomail.NewMsg()
			msg.SetListUnsubscribe(link, mailto)
			var buf bytes.Buffer
			msg.SetBodyString(gomail.TypeTextPlain, "x")
			if _, err := msg.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if want := "\r\nList-Unsubscribe: " + v + "\r\n"; !strings.Contains(buf.String(), want) {
				t.Errorf("(%q, %q): %q, go-mail writes\n%s", link, mailto, v, buf.String())
			}
		}
	}
}
