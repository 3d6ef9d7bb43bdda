package mailer

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// referenceTransaction is the pipelined transaction as deliverPipelined built it before
// pipelinedTransaction: the envelope from go-mail's GetSender and GetRecipients, the content
// through crlfWriter in whatever pieces go-mail writes it. ok is false where it fell back to
// go-mail's stepwise path.
func referenceTransaction(buf *bytes.Buffer, msg *gomail.Msg, smtputf8 bool) (string, bool) {
	from, err := msg.GetSender(false)
	if err != nil {
		return "", false
	}
	rcpts, err := msg.GetRecipients()
	if err != nil || len(rcpts) != 1 {
		return "", false
	}
	if strings.ContainsAny(from, "\r\n") || strings.ContainsAny(rcpts[0], "\r\n") {
		return "", false
	}
	mailCmd := "MAIL FROM:" + from + " BODY=8BITMIME"
	if smtputf8 {
		mailCmd += " SMTPUTF8"
	}
	buf.Reset()
	cw := refCRLFWriter{b: buf}
	if _, err := msg.WriteTo(&cw); err != nil {
		panic(err)
	}
	cw.end()
	return mailCmd + "\r\nRCPT TO:" + rcpts[0] + "\r\nBDAT " + strconv.Itoa(buf.Len()) + " LAST\r\n" + buf.String(), true
}

// refCRLFWriter is crlfWriter as it was, a line at a time.
type refCRLFWriter struct {
	b  *bytes.Buffer
	cr bool
}

func (w *refCRLFWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.b.Write(p)
			w.cr = p[len(p)-1] == '\r'
			break
		}
		cr := w.cr
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		w.b.Write(p[:i])
		if !cr {
			w.b.WriteByte('\r')
		}
		w.b.WriteByte('\n')
		w.cr = false
		p = p[i+1:]
	}
	return n, nil
}

func (w *refCRLFWriter) end() {
	b := w.b.Bytes()
	switch {
	case len(b) == 0 || b[len(b)-1] == '\n':
	case b[len(b)-1] == '\r':
		w.b.WriteByte('\n')
	default:
		w.b.WriteString("\r\n")
	}
}

// newTransaction is what deliverPipelined sends now, or false where it leaves the message to
// go-mail.
func newTransaction(t testing.TB, msg *gomail.Msg, smtputf8 bool) (string, bool) {
	env, ok := envelopeOf(msg)
	if !ok {
		return "", false
	}
	var buf bytes.Buffer
	buf.WriteString("left over from the previous message")
	payload, err := pipelinedTransaction(&buf, Composed{Msg: msg}, env, smtputf8)
	if err == errUnpipelinable {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(payload), true
}

// TestPipelinedTransactionMatchesReference: the envelope read from the message's addresses and
// the content written straight into the buffer give the bytes GetSender, GetRecipients and the
// line-by-line crlfWriter gave, for addresses that need quoting or are not ASCII, several or no
// recipients, and content with bare LFs, lone CRs and no final line end.
func TestPipelinedTransactionMatchesReference(t *testing.T) {
	type addrs struct{ from, envelope, to, cc, bcc string }
	envelopes := []addrs{
		{from: "a@acme.example", to: "x@example.com"},
		{from: "Acme <a@acme.example>", envelope: "b+42.sig@bounce.example", to: "X Y <x.y@example.com>"},
		{from: "a@acme.example", envelope: `"john doe"@bounce.example`, to: `"a..b"@example.com`},
		{from: "a@acme.example", to: "ünï@exämple.com"},
		{from: "a@acme.example", to: "x@[127.0.0.1]"},
		{from: "a@acme.example", to: "o'brien+tag@example.com"},
		{from: "a@acme.example", to: "x@example.com", cc: "y@example.com"},
		{from: "a@acme.example", bcc: "y@example.com"},
		{from: "a@acme.example"},
	}
	bodies := []struct {
		text, html string
		raw        bool
	}{
		{text: "hello\n", html: "<p>hello</p>"},
		{text: "first\n.second\r\n..third\rfourth\n\nlast", raw: true},
		{text: "\nstarts with LF\r\n\r", raw: true},
		{text: "ends without newline", raw: true},
		{text: "", raw: true},
		{text: strings.Repeat("long line of quoted-printable text é ", 40)},
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n := 0
	for _, e := range envelopes {
		for _, b := range bodies {
			for _, smtputf8 := range []bool{false, true} {
				opts := []gomail.MsgOption{gomail.WithNoDefaultUserAgent()}
				if b.raw {
					opts = append(opts, gomail.WithEncoding(gomail.NoEncoding))
				}
				msg := gomail.NewMsg(opts...)
				for _, set := range []struct {
					h gomail.AddrHeader
					v string
				}{{gomail.HeaderFrom, e.from}, {gomail.HeaderEnvelopeFrom, e.envelope}, {gomail.HeaderTo, e.to},
					{gomail.HeaderCc, e.cc}, {gomail.HeaderBcc, e.bcc}} {
					if set.v != "" {
						if err := msg.SetAddrHeader(set.h, set.v); err != nil {
							t.Fatalf("%s %q: %v", set.h, set.v, err)
						}
					}
				}
				msg.Subject("s")
				msg.SetMessageIDWithValue("id@acme.example")
				msg.SetDateWithValue(at)
				msg.SetBoundary("b")
				msg.SetBodyString(gomail.TypeTextPlain, b.text)
				if b.html != "" {
					msg.AddAlternativeString(gomail.TypeTextHTML, b.html)
				}
				want, wantOK := referenceTransaction(new(bytes.Buffer), msg, smtputf8)
				got, gotOK := newTransaction(t, msg, smtputf8)
				if got != want || gotOK != wantOK {
					t.Errorf("%+v, text %q, smtputf8 %v:\n got %v %q\nwant %v %q", e, b.text, smtputf8, gotOK, got, wantOK, want)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no case ran")
	}
}

// TestCRLFNormalisationMatchesReference: crlfWriter and bareLF give the bytes of the former
// line-by-line crlfWriter for random content cut into random pieces.
func TestCRLFNormalisationMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\r\n.")
	for range 5000 {
		content := make([]byte, rng.IntN(40))
		for i := range content {
			content[i] = alphabet[rng.IntN(len(alphabet))]
		}
		var want bytes.Buffer
		ref := refCRLFWriter{b: &want}
		var got bytes.Buffer
		got.WriteString("pad")
		cw := crlfWriter{b: &got}
		for rest := content; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(8))
			_, _ = ref.Write(rest[:k])
			_, _ = cw.Write(rest[:k])
			rest = rest[k:]
		}
		ref.end()
		endLine(&got, 3)
		if got.String()[3:] != want.String() {
			t.Fatalf("%q: got %q, want %q", content, got.String()[3:], want.String())
		}
		// The fix-up pipelinedTransaction applies to content written in one piece.
		var direct bytes.Buffer
		direct.Write(content)
		if i := bareLF(content, false); i >= 0 {
			direct.Truncate(i)
			cw := crlfWriter{b: &direct}
			_, _ = cw.Write(content[i:])
		}
		endLine(&direct, 0)
		if direct.String() != want.String() {
			t.Fatalf("%q: fixed up %q, want %q", content, direct.String(), want.String())
		}
	}
}

// BenchmarkPipelinedTransaction compares building a campaign message's pipelined transaction
// (envelope and content) the former way and the current one.
func BenchmarkPipelinedTransaction(b *testing.B) {
	msg := goldenMessages(&testing.T{})["campaign"]
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for range b.N {
			referenceTransaction(&buf, msg, false)
		}
	})
	b.Run("current", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for range b.N {
			env, _ := envelopeOf(msg)
			if _, err := pipelinedTransaction(&buf, Composed{Msg: msg}, env, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
