package mailer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"herald/internal/config"
	"herald/internal/smtpcapture"
)

// writeCounter is a go-mail middleware that counts the times go-mail writes its message: WriteTo
// applies a message's middlewares once per write.
type writeCounter struct{ n atomic.Int64 }

func (c *writeCounter) Handle(m *gomail.Msg) *gomail.Msg { c.n.Add(1); return m }
func (c *writeCounter) Type() gomail.MiddlewareType      { return "herald-write-counter" }

// ed25519DKIM loads a fresh Ed25519 key for acme.example (selector ed1) and returns the signer
// and the key's DNS record.
func ed25519DKIM(tb testing.TB) (*DKIM, string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "ed1.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	d, err := LoadDKIM("acme.example:ed1:" + path)
	if err != nil {
		tb.Fatal(err)
	}
	return d, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}

// TestDKIMSignedMessageWrittenOnce: a signed message is written by go-mail once, to sign it; each
// relay path, and each relay tried on failover, sends those signed bytes as they are, and the
// signature verifies on what the server received.
func TestDKIMSignedMessageWrittenOnce(t *testing.T) {
	t.Parallel()
	d, record := ed25519DKIM(t)
	verify := func(raw []byte) error {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) {
				if name == "ed1._domainkey.acme.example" {
					return []string{record}, nil
				}
				return nil, errors.New("no such record: " + name)
			},
		})
		switch {
		case err != nil:
			return err
		case len(vs) != 1:
			return fmt.Errorf("%d signatures", len(vs))
		}
		return vs[0].Err
	}
	quiet := slog.New(slog.DiscardHandler)
	relayOpts := func(srv *smtpcapture.Server, noPipelining bool) RelayOptions {
		return RelayOptions{SMTP: config.SMTP{Host: "127.0.0.1", Port: srv.Port(), TLS: config.TLSNone},
			HELO: "test.local", Timeout: 5 * time.Second, Size: 1, Logger: quiet, NoPipelining: noPipelining}
	}

	for _, noPipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPipelining=%v", noPipelining), func(t *testing.T) {
			t.Parallel()
			// The first relay reads the whole message, then answers that it is busy: the message
			// moves on to the second relay.
			var (
				mu      sync.Mutex
				refused [][]byte
			)
			busy, err := smtpcapture.Start(smtpcapture.Options{DataHook: func(m *smtpcapture.Message) error {
				mu.Lock()
				refused = append(refused, bytes.Clone(m.Raw))
				mu.Unlock()
				return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "busy"}
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { busy.Close() })
			srv, err := smtpcapture.Start(smtpcapture.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			relay, err := NewRelay(relayOpts(srv, noPipelining))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(relay.Close)
			relays, err := NewRelays([]RelayOptions{relayOpts(busy, noPipelining), relayOpts(srv, noPipelining)}, quiet, nil, RelaysPolicy{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(relays.Close)

			for i, tr := range []struct {
				name      string
				transport Transport
				received  int // messages srv holds after the send
			}{{"relay", relay, 1}, {"failover", relays, 2}} {
				counter := &writeCounter{}
				msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithMiddleware(counter))
				if err := msg.From("News <news@acme.example>"); err != nil {
					t.Fatal(err)
				}
				if err := msg.To(fmt.Sprintf("u%d@example.com", i)); err != nil {
					t.Fatal(err)
				}
				msg.Subject("Once")
				msg.SetMessageIDWithValue(fmt.Sprintf("once.%d@acme.example", i))
				msg.SetBodyString(gomail.TypeTextPlain, "Hello")
				msg.AddAlternativeString(gomail.TypeTextHTML, "<p>Hello</p>")
				signed, err := d.sign(msg, "news@acme.example", quiet)
				if err != nil {
					t.Fatal(err)
				}
				if !signed.Signed() || counter.n.Load() != 1 {
					t.Fatalf("%s: signed %v after %d writes; want signed after 1", tr.name, signed.Signed(), counter.n.Load())
				}
				var want bytes.Buffer
				if _, err := signed.WriteTo(&want); err != nil {
					t.Fatal(err)
				}

				if res, err := tr.transport.Send(context.Background(), signed); err != nil {
					t.Fatalf("%s: %+v, %v", tr.name, res, err)
				}
				if n := counter.n.Load(); n != 1 {
					t.Errorf("%s: go-mail wrote the signed message %d times; want once, to sign it", tr.name, n)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				msgs, err := srv.WaitFor(ctx, tr.received)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				got := msgs[tr.received-1].Raw
				if !bytes.Equal(got, want.Bytes()) {
					t.Errorf("%s: received\n%s\nwant the signed bytes\n%s", tr.name, got, want.Bytes())
				}
				if err := verify(got); err != nil {
					t.Errorf("%s: signature does not verify: %v", tr.name, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(refused) != 1 {
				t.Fatalf("the busy relay read %d messages; want 1", len(refused))
			}
			if err := verify(refused[0]); err != nil {
				t.Errorf("message read by the busy relay: signature does not verify: %v", err)
			}
		})
	}
}

// BenchmarkSignedRelayWrite is a signed campaign message's compose and the relay's write of it
// into a pipelined transaction: the CPU DKIM adds to each message, the signature aside.
func BenchmarkSignedRelayWrite(b *testing.B) {
	d, _ := ed25519DKIM(b)
	list := &CampaignList{BaseURL: "https://herald.example", InboundDomain: "in.herald.example", Purpose: "news",
		PurposeTitle: "Acme News", Workspace: "acme", DKIM: d, Logger: slog.New(slog.DiscardHandler)}
	if err := list.Check(); err != nil {
		b.Fatal(err)
	}
	html := "<p>Hello User (pro)</p>" + string(bytes.Repeat([]byte("<p>Some news about our products, with a <a href=\"https://acme.example/p\">link</a>.</p>\n"), 40)) +
		"<p><a href=\"https://herald.example/u/abc\">Unsubscribe</a></p>"
	text := string(bytes.Repeat([]byte("Some news about our products, with a link <https://acme.example/p>.\n"), 40))
	var buf bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := int64(i)
		m := &Message{ID: "1", WorkspaceID: 3, Purpose: "news", ContactID: &id, To: "u1042@d7.example",
			ToName: "User 1042", From: "news@acme.example", FromName: "Acme News", Subject: "News for User",
			HTML: html, Text: text, MessageID: "c17.r1042.x@herald.example", CreatedAt: time.Now(),
			Headers: map[string]string{"X-Herald-Campaign": "17"}, ReturnPath: "b+3.1042.sig@bounce.herald.example"}
		c, err := list.Compose(m, "abcdefghijklmnopqrstuvwxyz234567")
		if err != nil {
			b.Fatal(err)
		}
		env, _ := envelopeOf(c.Msg)
		if _, err := pipelinedTransaction(&buf, c, env, false); err != nil {
			b.Fatal(err)
		}
	}
}
