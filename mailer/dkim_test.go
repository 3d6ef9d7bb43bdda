package mailer_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"herald/internal/smtpcapture"
	"herald/mailer"
)

// dkimKeys are test keys written as PEM files, with the DNS records that publish them.
type dkimKeys struct {
	dir     string
	records map[string]string // selector._domainkey.domain -> TXT record
}

func newDKIMKeys(t testing.TB) *dkimKeys {
	t.Helper()
	return &dkimKeys{dir: t.TempDir(), records: map[string]string{}}
}

// write stores a PEM block in a file and returns its path.
func (k *dkimKeys) write(t testing.TB, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ed25519 makes an Ed25519 key (PKCS#8 PEM) for domain and selector and returns its spec entry.
func (k *dkimKeys) ed25519(t testing.TB, domain, selector string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	k.records[selector+"._domainkey."+domain] = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	return domain + ":" + selector + ":" + k.write(t, selector+".pem", "PRIVATE KEY", der)
}

// rsa makes an RSA key of bits (PKCS#1 PEM) for domain and selector and returns its spec entry.
func (k *dkimKeys) rsa(t testing.TB, domain, selector string, bits int) string {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k.records[selector+"._domainkey."+domain] = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	return domain + ":" + selector + ":" + k.write(t, selector+".pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(priv))
}

// verify checks raw's DKIM signatures against the test records.
func (k *dkimKeys) verify(raw []byte) ([]*dkim.Verification, error) {
	return dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if rec, ok := k.records[name]; ok {
				return []string{rec}, nil
			}
			return nil, errors.New("no such record: " + name)
		},
	})
}

// TestDKIMSignsMarketingAndTransactional checks the signatures of what the SMTP server received,
// on both of the relay's paths: pipelined BDAT and DATA a command at a time.
func TestDKIMSignsMarketingAndTransactional(t *testing.T) {
	t.Parallel()
	for _, noPipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPipelining=%v", noPipelining), func(t *testing.T) {
			t.Parallel()
			testDKIMSigns(t, noPipelining)
		})
	}
}

func testDKIMSigns(t *testing.T, noPipelining bool) {
	keys := newDKIMKeys(t)
	d, err := mailer.LoadDKIM(keys.ed25519(t, "acme.example", "ed1") + ", " + keys.rsa(t, "rsa.example", "r2048", 2048))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, setupOpts{dkim: d, noPipelining: noPipelining})
	cs := seedContacts(t, b, b.wsA, "news", 2)
	for i, from := range []string{"News <news@acme.example>", "news@rsa.example"} {
		b.send(t, b.keyA, "m"+cs[i].Email, mustJSON(map[string]any{
			"stream": "marketing", "purpose": "news", "contact": "c" + string(rune('1'+i)), "from": from,
			"subject": "Our news, Grüße", "html": "<p>Hello</p>", "text": "Hello",
		}))
	}
	b.send(t, b.keyA, "t1", mustJSON(map[string]any{"from": "support@RSA.Example", "to": "x@example.com", "subject": "Receipt", "text": "Thanks"}))
	b.send(t, b.keyA, "t2", mustJSON(map[string]any{"from": "support@unsigned.example", "to": "y@example.com", "subject": "Receipt", "text": "Thanks"}))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	byFrom := map[string]smtpcapture.Message{}
	for _, m := range msgs {
		byFrom[strings.ToLower(m.From)] = m
	}

	for from, domain := range map[string]string{"news@acme.example": "acme.example", "news@rsa.example": "rsa.example", "support@rsa.example": "rsa.example"} {
		m := byFrom[from]
		vs, err := keys.verify(m.Raw)
		if err != nil || len(vs) != 1 {
			t.Fatalf("%s: %d verifications, %v", from, len(vs), err)
		}
		v := vs[0]
		if v.Err != nil || v.Domain != domain {
			t.Errorf("%s: signature of %q: %v\n%s", from, v.Domain, v.Err, m.Raw)
		}
		signed := make([]string, len(v.HeaderKeys))
		for i, h := range v.HeaderKeys {
			signed[i] = strings.ToLower(h)
		}
		for _, h := range []string{"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type"} {
			if !slices.Contains(signed, h) {
				t.Errorf("%s: h= lacks %s: %q", from, h, signed)
			}
		}
		if sig := m.Header.Get("DKIM-Signature"); !strings.Contains(sig, "c=relaxed/relaxed") {
			t.Errorf("%s: DKIM-Signature = %q", from, sig)
		}
		for _, line := range strings.Split(string(m.Raw[:bytes.Index(m.Raw, []byte("\r\n\r\n"))]), "\r\n") {
			if len(line) > 998 {
				t.Errorf("%s: header line of %d bytes", from, len(line))
			}
		}
		assertTamperingDetected(t, keys, from, m.Raw)
	}
	if sig := byFrom["support@unsigned.example"].Header.Get("DKIM-Signature"); sig != "" {
		t.Errorf("mail of a domain without a key is signed: %q", sig)
	}
}

// assertTamperingDetected changes a signed message in ways a forwarder or attacker might, and
// expects verification to fail for each; changes relaxed canonicalisation ignores must not.
func assertTamperingDetected(t *testing.T, keys *dkimKeys, from string, raw []byte) {
	t.Helper()
	marketing := bytes.Contains(raw, []byte("\r\nList-Unsubscribe: "))
	for _, tc := range []struct {
		name   string
		change func(string) string
		ok     bool
	}{
		{"subject", func(s string) string { return strings.Replace(s, "\r\nSubject: ", "\r\nSubject: Re: ", 1) }, false},
		{"body", func(s string) string {
			i := strings.Index(s, "\r\n\r\n")
			return s[:i] + strings.Replace(s[i:], "Thanks", "Thank5", 1)
		}, false},
		{"prepended from", func(s string) string { return "From: ceo@acme.example\r\n" + s }, false},
		{"unsubscribe target", func(s string) string {
			return strings.Replace(s, "<https://herald.test/u/", "<https://evil.test/u/", 1)
		}, !marketing},
		{"prepended list-unsubscribe", func(s string) string { return "List-Unsubscribe: <https://evil.test/u/x>\r\n" + s }, false},
		{"whitespace in header", func(s string) string { return strings.Replace(s, "\r\nSubject: ", "\r\nSubject:  \t ", 1) }, true},
	} {
		changed := tc.change(string(raw))
		if tc.name == "body" && marketing {
			changed = strings.Replace(changed, "Hello", "Hellx", 1)
		}
		if changed == string(raw) && !tc.ok {
			t.Fatalf("%s: change %q did not apply", from, tc.name)
		}
		vs, err := keys.verify([]byte(changed))
		if err != nil || len(vs) != 1 {
			t.Fatalf("%s, %s: %d verifications, %v", from, tc.name, len(vs), err)
		}
		if got := vs[0].Err == nil; got != tc.ok {
			t.Errorf("%s, %s: verifies = %v, want %v (%v)", from, tc.name, got, tc.ok, vs[0].Err)
		}
	}
}

// TestDKIMConcurrentSends signs many messages on several workers at once with one key: every
// signature verifies (and -race sees no shared state written), on both relay paths.
func TestDKIMConcurrentSends(t *testing.T) {
	t.Parallel()
	for _, noPipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPipelining=%v", noPipelining), func(t *testing.T) {
			t.Parallel()
			keys := newDKIMKeys(t)
			d, err := mailer.LoadDKIM(keys.ed25519(t, "acme.example", "ed1"))
			if err != nil {
				t.Fatal(err)
			}
			b := setup(t, setupOpts{dkim: d, workers: 8, poolSize: 8, noPipelining: noPipelining})
			cs := seedContacts(t, b, b.wsA, "news", 40)
			enqueueMarketing(t, b, b.wsA, "news", cs)
			msgs, err := b.smtp.WaitFor(waitCtx(t), len(cs))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				vs, err := keys.verify(m.Raw)
				if err != nil || len(vs) != 1 || vs[0].Err != nil {
					t.Fatalf("message to %s does not verify: %v %v", m.To[0], err, vs)
				}
			}
		})
	}
}

func TestLoadDKIMBadSpecs(t *testing.T) {
	t.Parallel()
	keys := newDKIMKeys(t)
	good := keys.ed25519(t, "acme.example", "ed1")
	goodPath := good[strings.LastIndex(good, ":")+1:]
	short := keys.rsa(t, "short.example", "r1024", 1024)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecPath := keys.write(t, "ec.pem", "PRIVATE KEY", ecDER)
	certPath := keys.write(t, "cert.pem", "CERTIFICATE", []byte("not a certificate either"))
	garbagePath := filepath.Join(keys.dir, "garbage.pem")
	if err := os.WriteFile(garbagePath, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec string
		want       []string // substrings of the error
	}{
		{"domain only", "acme.example", []string{"dkim entry 1", "domain:selector:/path"}},
		{"no path", "acme.example:ed1", []string{"entry 1", "domain:selector:/path"}},
		{"empty selector", "acme.example::" + goodPath, []string{"entry 1", "domain:selector:/path"}},
		{"empty domain", ":ed1:" + goodPath, []string{"entry 1", "domain:selector:/path"}},
		{"bad domain", "acme example:ed1:" + goodPath, []string{"entry 1", "not a domain"}},
		{"single label", "localhost:ed1:" + goodPath, []string{"not a domain"}},
		{"bad selector", "acme.example:ed 1:" + goodPath, []string{"entry 1", "not a selector"}},
		{"unreadable file", "acme.example:ed1:" + filepath.Join(keys.dir, "missing.pem"), []string{"entry 1", "read key", "missing.pem"}},
		{"directory", "acme.example:ed1:" + keys.dir, []string{"read key"}},
		{"not pem", "acme.example:ed1:" + garbagePath, []string{"entry 1", "garbage.pem", "no valid PEM"}},
		{"certificate pem", "acme.example:ed1:" + certPath, []string{"cert.pem", "unsupported PEM block type"}},
		{"ecdsa key", "acme.example:ed1:" + ecPath, []string{"ec.pem", "unsupported key type"}},
		{"short rsa", short, []string{"entry 1", "1024 bits", "at least 2048"}},
		{"second entry bad", good + ",other.example:s", []string{"dkim entry 2 (other.example:s)"}},
		{"duplicate domain", good + "," + good, []string{"entry 2", "acme.example has a key already"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := mailer.LoadDKIM(tc.spec)
			if err == nil || d != nil {
				t.Fatalf("LoadDKIM(%q) = %v, %v; want an error", tc.spec, d, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadDKIMGood(t *testing.T) {
	t.Parallel()
	keys := newDKIMKeys(t)
	for _, spec := range []string{"", " , "} {
		if d, err := mailer.LoadDKIM(spec); d != nil || err != nil {
			t.Errorf("LoadDKIM(%q) = %v, %v; want nil, nil (no signing)", spec, d, err)
		}
	}
	d, err := mailer.LoadDKIM(" " + strings.Replace(keys.ed25519(t, "acme.example", "ed1"), "acme.example", "Acme.Example.", 1) +
		" ,," + keys.rsa(t, "rsa.example", "r2048", 2048))
	if err != nil {
		t.Fatal(err)
	}
	got := d.Domains()
	slices.Sort(got)
	if !slices.Equal(got, []string{"acme.example", "rsa.example"}) {
		t.Errorf("Domains() = %q", got)
	}
}

// BenchmarkMarketingDKIM measures marketing sends per second through the worker (consent check,
// list headers, footer, signing, hand-off) unsigned, with Ed25519 and with RSA-2048 keys.
func BenchmarkMarketingDKIM(bm *testing.B) {
	const n = 3000
	for _, kind := range []string{"none", "ed25519", "rsa2048"} {
		keys := newDKIMKeys(bm)
		var spec string
		switch kind {
		case "ed25519":
			spec = keys.ed25519(bm, "acme.example", "ed1")
		case "rsa2048":
			spec = keys.rsa(bm, "acme.example", "r2048", 2048)
		}
		d, err := mailer.LoadDKIM(spec)
		if err != nil {
			bm.Fatal(err)
		}
		sink := &spanSink{}
		b := setup(bm, setupOpts{dataHook: sink.hook, keep: -1, workers: 32, poolSize: 16, dbPool: 40,
			cooldown: 20 * time.Millisecond, dkim: d})
		ctx := context.Background()
		cs := seedContacts(bm, b, b.wsA, "news", n)
		if err := b.river.QueuePause(ctx, mailer.QueueMarketing, nil); err != nil {
			bm.Fatal(err)
		}
		enqueueMarketing(bm, b, b.wsA, "news", cs)
		if err := b.river.QueueResume(ctx, mailer.QueueMarketing, nil); err != nil {
			bm.Fatal(err)
		}
		b.waitFinal(bm, b.wsA, 5*time.Minute)
		rate := float64(n-1) / sink.last.Sub(sink.first).Seconds()
		bm.ReportMetric(rate, "msgs/s-"+kind)
		fmt.Printf("marketing sends through the worker, %d messages, DKIM %s: %.0f msgs/s\n", n, kind, rate)
	}
}
