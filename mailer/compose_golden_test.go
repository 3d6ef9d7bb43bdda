package mailer

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/compose/*.eml from the current compose")

// goldenMessages are messages of every shape compose writes: a campaign message (alternative
// parts, one-click https link), a transactional one with client headers, Reply-To, a VERP return
// path and an attachment, an HTML-only marketing one on a loopback http base, and one with
// non-ASCII names, subject and body and an envelope sender whose local part needs quoting.
func goldenMessages(t *testing.T) map[string]*gomail.Msg {
	t.Helper()
	at := time.Date(2026, 11, 3, 14, 5, 6, 0, time.FixedZone("", 3600))
	out := map[string]*gomail.Msg{}
	add := func(name string, c Composed, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// go-mail draws random multipart boundaries; a fixed one makes the bytes comparable.
		c.Msg.SetBoundary("golden-boundary-0123456789")
		out[name] = c.Msg
	}

	list := &CampaignList{BaseURL: "https://herald.example", InboundDomain: "in.herald.example", Purpose: "news",
		PurposeTitle: "Acme News", Workspace: "acme"}
	if err := list.Check(); err != nil {
		t.Fatal(err)
	}
	id := int64(1042)
	campaign := &Message{ID: "1042", WorkspaceID: 3, Purpose: "news", ContactID: &id, To: "u1042@d7.example",
		ToName: "User 1042", From: "news@acme.example", FromName: "Acme News", Subject: "News for User",
		HTML:      "<p>Hello User 1042 (pro)</p><p><a href=\"https://herald.example/u/abc\">Unsubscribe</a></p><p>1 Main Street</p>",
		Text:      "Hello User 1042 (pro)\n\nUnsubscribe <https://herald.example/u/abc>\n\n1 Main Street",
		MessageID: "c17.r1042.x@herald.example", CreatedAt: at, Headers: map[string]string{"X-Herald-Campaign": "17"},
		ReturnPath: "b+3.1042.sig@bounce.herald.example"}
	msg, err := list.Compose(campaign, "abcdefghijklmnopqrstuvwxyz234567")
	add("campaign", msg, err)

	transactional := &Message{ID: "0b7c", WorkspaceID: 1, Stream: StreamTransactional, To: "ann@example.com",
		ToName: "Ann Example", From: "billing@shop.example", FromName: "Shop", ReplyTo: "Help Desk <help@shop.example>",
		Subject: "Your invoice", Text: "Hello Ann,\nyour invoice is attached.\n.\n", MessageID: "0b7c@herald.example",
		CreatedAt: at, ReturnPath: "b+77@bounce.herald.example",
		Headers: map[string]string{"X-Order": "A-1", "In-Reply-To": "<q@shop.example>", "References": "<p@shop.example> <q@shop.example>",
			"X-Long": strings.Repeat("word ", 40)},
		Attachments: []Attachment{{Filename: "invoice.txt", ContentType: "text/plain", Data: []byte("total: 12.00\n")}}}
	msg, err = compose(transactional, composeOpts{})
	add("transactional", msg, err)

	htmlOnly := &Message{ID: "h1", WorkspaceID: 1, Stream: StreamMarketing, To: "bob@example.net", From: "news@shop.example",
		Subject: "Sale", HTML: "<html><body><p>Sale!</p></BODY ></html>", MessageID: "h1@herald.example", CreatedAt: at}
	msg, err = compose(htmlOnly, composeOpts{List: newListInfo("http://127.0.0.1:8080", "in.example", "tok123",
		listIDValue("Shop News", "news", "shop", "in.example"))})
	add("html-only-loopback", msg, err)

	intl := &Message{ID: "i1", WorkspaceID: 1, Stream: StreamTransactional, To: "zoë@exämple.com", ToName: "Zoë Ünïcode",
		From: "post@shop.example", FromName: "Café Straße", Subject: "Grüße aus Köln — 10 % Rabatt auf alles, nur heute und morgen",
		Text: "Grüße,\r\ndas ist eine Zeile mit mehr als sechsundsiebzig Zeichen, damit quoted-printable sie umbrechen muss.\n",
		HTML: "<p>Grüße</p>", MessageID: "i1@herald.example", CreatedAt: at, ReturnPath: `"john doe"@bounce.example`}
	msg, err = compose(intl, composeOpts{})
	add("international", msg, err)
	return out
}

// TestComposeGolden: compose writes exactly the bytes it wrote before the worker's CPU work, but
// for the User-Agent and X-Mailer fields go-mail added by default, which Herald no longer sends.
// go-mail writes its preformatted fields (List-Unsubscribe, List-Unsubscribe-Post, List-Id) in map
// order, so their run is compared as a set.
func TestComposeGolden(t *testing.T) {
	for name, msg := range goldenMessages(t) {
		var buf bytes.Buffer
		if _, err := msg.WriteTo(&buf); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		head, body, ok := bytes.Cut(buf.Bytes(), []byte("\r\n\r\n"))
		if !ok {
			t.Fatalf("%s: no header end", name)
		}
		fields := canonicalFields(string(head))
		path := filepath.Join("testdata", "compose", name+".eml")
		if *updateGolden {
			fields = slices.DeleteFunc(fields, func(f string) bool {
				return strings.HasPrefix(f, "User-Agent:") || strings.HasPrefix(f, "X-Mailer:")
			})
			out := strings.Join(fields, "\r\n") + "\r\n\r\n" + string(body)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		wantHead, wantBody, _ := strings.Cut(string(want), "\r\n\r\n")
		if got := strings.Join(fields, "\r\n"); got != wantHead {
			t.Errorf("%s: header differs:\n got:\n%s\nwant:\n%s", name, got, wantHead)
		}
		if string(body) != wantBody {
			t.Errorf("%s: body differs:\n got %q\nwant %q", name, body, wantBody)
		}
	}
}

// canonicalFields splits a header block into its fields (continuation lines kept with their
// field) and sorts the run of fields go-mail writes in map order.
func canonicalFields(head string) []string {
	var fields []string
	for _, line := range strings.Split(head, "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
			fields[len(fields)-1] += "\r\n" + line
			continue
		}
		fields = append(fields, line)
	}
	preformatted := func(f string) bool {
		for _, p := range []string{"List-Unsubscribe:", "List-Unsubscribe-Post:", "List-Id:", "DKIM-Signature:"} {
			if strings.HasPrefix(f, p) {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(fields); {
		j := i
		for j < len(fields) && preformatted(fields[j]) {
			j++
		}
		if j > i {
			slices.Sort(fields[i:j])
			i = j
			continue
		}
		i++
	}
	return fields
}

// TestOneClickShortCut: where CampaignList.Check finds the base's links written back unchanged,
// Compose skips go-mail's parse of each recipient's link; the message is the one the parse gives,
// for bases of every shape and any token, and a base or token the short cut does not cover takes
// go-mail's path.
func TestOneClickShortCut(t *testing.T) {
	bases := []string{"https://herald.example", "https://herald.example/", "https://herald.example/base/path",
		"https://herald.example:8443/p%41th", "https://user@herald.example", "https://herald.example/?q=1",
		"https://herald.example/#frag", "https://HERALD.example/x;y", "https://herald.example/a%2Fb",
		"https://herald.example/ü", "https://[::1]:8443", "https://herald.example/a b", "http://127.0.0.1:8080"}
	tokens := []string{"abcdefghijklmnopqrstuvwxyz234567", "A-._~z", "..", "a/b", "a?b", "a#b", "%41", "a b", "ü", "a%"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = chars[rng.IntN(len(chars))]
		}
		tokens = append(tokens, string(b))
	}
	shortCuts := 0
	for _, base := range bases {
		list := &CampaignList{BaseURL: base, InboundDomain: "in.herald.example", Purpose: "news", Workspace: "acme"}
		if err := list.Check(); err != nil {
			continue
		}
		for _, token := range tokens {
			compose := func(oneClick bool) (string, error) {
				l := *list
				l.oneClick = oneClick
				msg, err := l.Compose(&Message{ID: "1", WorkspaceID: 1, To: "x@example.com", From: "a@acme.example",
					Subject: "s", Text: "t", HTML: "<p>h</p>", MessageID: "1@h", CreatedAt: time.Unix(0, 0).UTC()}, token)
				if err != nil {
					return "", err
				}
				msg.Msg.SetBoundary("b")
				var buf bytes.Buffer
				if _, err := msg.WriteTo(&buf); err != nil {
					return "", err
				}
				head, body, _ := strings.Cut(buf.String(), "\r\n\r\n")
				return strings.Join(canonicalFields(head), "\r\n") + "\r\n\r\n" + body, nil
			}
			got, err := compose(list.oneClick)
			want, wantErr := compose(false)
			if got != want || (err == nil) != (wantErr == nil) {
				t.Errorf("base %q token %q: short cut gives\n%s (%v)\ngo-mail's path\n%s (%v)", base, token, got, err, want, wantErr)
			}
			if list.oneClick && unreserved(token) {
				shortCuts++
			}
		}
	}
	if shortCuts == 0 {
		t.Fatal("no message took the short cut")
	}
}
