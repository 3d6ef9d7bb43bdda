package campaigns_test

import (
	"html"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/contacts"
	"herald/mailer"
	"herald/templates"
	"herald/tracking"
)

// renderContact is the render step of the batch worker's build.
func renderContact(c *templates.Compiled, p contacts.Contact) (templates.Rendered, error) {
	return c.RenderContact(p)
}

// BenchmarkCampaignMessageBuild is the CPU of one campaign message in the worker short of the
// database and the relay: what sendRun.build does (unsubscribe, view and VERP tokens, render of
// CampaignSend100k's template, links, Message-ID, compose) and the consent batch's address hash,
// then the message written out as the relay writes it. No database: steady per-message figures
// for changes to that path, which the end-to-end benchmark measures with PostgreSQL's and the
// machine's noise.
func BenchmarkCampaignMessageBuild(b *testing.B) {
	keys := consent.DevKeys()
	tpl, err := templates.Compile(templates.Template{Subject: "News for {{.contact.first_name}}", HTML: `<p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
		`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`})
	if err != nil {
		b.Fatal(err)
	}
	list := &mailer.CampaignList{BaseURL: "https://herald.example", InboundDomain: "in.herald.example", Purpose: "news",
		PurposeTitle: "Acme News", Workspace: "acme"}
	if err := list.Check(); err != nil {
		b.Fatal(err)
	}
	verp := tracking.VERP{Keys: keys, Domain: "bounce.herald.example"}
	const ws, campaign, purpose = 3, 17, 5
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := range b.N {
		id := int64(1000 + i)
		p := contacts.Contact{ID: id, Email: "u" + strconv.FormatInt(id, 10) + "@d7.example", Name: "User " + strconv.FormatInt(id, 10),
			Attributes: map[string]any{"plan": "pro"}}
		_ = keys.AddressHash(ws, p.Email)
		token := keys.Token(consent.Recipient{WorkspaceID: ws, ContactID: id, PurposeID: purpose})
		unsub := list.UnsubscribeURL(token)
		out, err := renderContact(tpl, p)
		if err != nil {
			b.Fatal(err)
		}
		links := templates.Links{Unsubscribe: unsub, Preferences: unsub, PostalAddress: "1 Main Street, Springfield"}
		if strings.Contains(out.HTML, templates.PlaceholderViewOnline) || strings.Contains(out.Text, templates.PlaceholderViewOnline) {
			links.ViewOnline = campaigns.ViewURL(list.BaseURL, keys.SignIDs("herald/view/v1", ws, campaign, id)) // as build: only when printed
		}
		out = out.WithLinks(links)
		if !strings.Contains(out.HTML, html.EscapeString(unsub)) || !strings.Contains(out.Text, unsub) {
			b.Fatal("no unsubscribe link")
		}
		m := &mailer.Message{ID: strconv.FormatInt(id, 10), WorkspaceID: ws, Purpose: "news", ContactID: &id,
			To: p.Email, ToName: p.Name, From: "news@acme.example", FromName: "Acme News", Subject: out.Subject,
			HTML: out.HTML, Text: out.Text, MessageID: campaigns.MessageID(keys, campaign, id, "herald.example"),
			CreatedAt: time.Now(), Headers: map[string]string{"X-Herald-Campaign": strconv.Itoa(campaign)},
			ReturnPath: verp.RecipientAddress(ws, id)}
		msg, err := list.Compose(m, token)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := msg.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time rather than wall time: steady on a machine other work shares; it includes the
	// collector's work for the garbage the loop made.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
