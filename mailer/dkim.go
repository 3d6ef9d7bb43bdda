package mailer

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"

	gomail "github.com/wneessen/go-mail"
)

// dkimSignedHeaders are the fields a signature covers. RFC 8058 requires List-Unsubscribe and
// List-Unsubscribe-Post to be signed; go-mail's default set lacks them. A field a message does not
// have is still listed: a verifier then rejects the message if someone adds it later.
var dkimSignedHeaders = []string{
	"From", "Reply-To", "To", "Subject", "Date", "Message-ID",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
}

// dkimOversigned are listed once more than they occur, so that a copy prepended in transit (a
// second From, or List-Unsubscribe pointing elsewhere) breaks the signature instead of being shown.
var dkimOversigned = []string{"From", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post"}

// maxUnsignedLogged bounds the set of From domains already reported as having no key.
const maxUnsignedLogged = 1000

// DKIM signs outgoing mail with the key of its From domain (relaxed/relaxed, RSA-SHA256 or
// Ed25519-SHA256, through go-mail's signer). Mail from a domain without a key goes unsigned. A
// nil *DKIM signs nothing.
type DKIM struct {
	signers map[string]*gomail.DKIMSigner // by lower-case domain

	mu       sync.Mutex
	unsigned map[string]bool // domains already logged as unsigned
}

var (
	dkimDomainRE   = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)
	dkimSelectorRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9._-]{0,62})$`)
)

// LoadDKIM reads the keys named by spec, "domain:selector:/path/key.pem,..." (HERALD_DKIM). A key
// is an RSA key of at least 2048 bits or an Ed25519 key, PEM-encoded as PKCS#8 or PKCS#1. An
// empty spec returns nil: no signing.
func LoadDKIM(spec string) (*DKIM, error) {
	d := &DKIM{signers: map[string]*gomail.DKIMSigner{}, unsigned: map[string]bool{}}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		s, domain, err := loadDKIMEntry(entry)
		if err != nil {
			return nil, fmt.Errorf("dkim entry %d (%s): %w", i+1, truncate(entry, 120), err)
		}
		if d.signers[domain] != nil {
			return nil, fmt.Errorf("dkim entry %d (%s): domain %s has a key already", i+1, truncate(entry, 120), domain)
		}
		d.signers[domain] = s
	}
	if len(d.signers) == 0 {
		return nil, nil
	}
	return d, nil
}

func loadDKIMEntry(entry string) (*gomail.DKIMSigner, string, error) {
	parts := strings.SplitN(entry, ":", 3) // the path may hold colons; domain and selector cannot
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, "", errors.New("want domain:selector:/path/to/key.pem")
	}
	domain, selector, path := strings.ToLower(strings.TrimSuffix(parts[0], ".")), parts[1], parts[2]
	if !dkimDomainRE.MatchString(domain) {
		return nil, "", fmt.Errorf("%q is not a domain name", domain)
	}
	if !dkimSelectorRE.MatchString(selector) {
		return nil, "", fmt.Errorf("%q is not a selector (letters, digits, '.', '-', '_')", selector)
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read key: %w", err)
	}
	key, err := gomail.PrivKeyFromPEM(pemBytes)
	if err != nil {
		return nil, "", fmt.Errorf("key %s: %w", path, err)
	}
	if rk, ok := key.(*rsa.PrivateKey); ok && rk.N.BitLen() < 2048 {
		return nil, "", fmt.Errorf("key %s: RSA key of %d bits; DKIM needs at least 2048 (RFC 8301)", path, rk.N.BitLen())
	}
	s := gomail.NewDKIMSigner(domain, selector, key)
	s.HeaderCanonicalization(gomail.CanonicalizationRelaxed)
	s.BodyCanonicalization(gomail.CanonicalizationRelaxed)
	s.SignHeaders(dkimSignedHeaders...)
	s.OversignHeaders(dkimOversigned...)
	// One signature now: a key that cannot sign fails at start-up, not on the first message. It
	// also fixes the algorithm go-mail's Sign otherwise caches in the signer on first use.
	if _, err := s.Sign([]byte("From: check@"+domain+"\r\n"), []byte("check\r\n")); err != nil {
		return nil, "", fmt.Errorf("key %s: test signature: %w", path, err)
	}
	return s, domain, nil
}

// Domains lists the domains that have a key.
func (d *DKIM) Domains() []string {
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.signers))
	for dom := range d.signers {
		out = append(out, dom)
	}
	return out
}

// sign DKIM-signs msg if the domain of its From address has a key, and returns it as a relay is
// to send it; without a key it returns msg unsigned. msg must be complete: the relay sends the
// bytes written here, and any later change to msg would not be sent.
//
// go-mail's own path (msg.SetDKIM, signing in WriteTo) cannot be used as it is: v0.8.1 folds the
// signature's tag list inside a tag when one is longer than a line, and h= with the list above
// always is; relaxed canonicalisation then turns the fold into a space that was not signed, and
// every verifier rejects the signature. So the message is written once here, signed with go-mail's
// signer, and the signature, folded only where that is harmless, goes in front of those same
// bytes, as go-mail's own path would put it. The relay sends them without writing the message
// again (see Composed).
func (d *DKIM) sign(msg *gomail.Msg, fromAddress string, logger *slog.Logger) (Composed, error) {
	if d == nil {
		return Composed{Msg: msg}, nil
	}
	domain := strings.ToLower(fromAddress[strings.LastIndexByte(fromAddress, '@')+1:])
	s := d.signers[domain]
	if s == nil {
		d.logUnsigned(domain, logger)
		return Composed{Msg: msg}, nil
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return Composed{}, fmt.Errorf("dkim sign: write message: %w", err)
	}
	raw := buf.Bytes()
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		return Composed{}, errors.New("dkim sign: message has no body")
	}
	signer := *s // Sign may write to its signer; a copy per message keeps concurrent sends apart
	line, err := signer.Sign(raw[:end+2], raw[end+4:])
	if err != nil {
		return Composed{}, fmt.Errorf("dkim sign: %w", err)
	}
	return Composed{Msg: msg, signature: "DKIM-Signature: " + refoldDKIM(line) + "\r\n", raw: raw}, nil
}

func (d *DKIM) logUnsigned(domain string, logger *slog.Logger) {
	d.mu.Lock()
	seen := d.unsigned[domain] || len(d.unsigned) >= maxUnsignedLogged
	if !seen {
		d.unsigned[domain] = true
	}
	d.mu.Unlock()
	if !seen && logger != nil {
		logger.Debug("no DKIM key for sender domain; its mail goes unsigned", "domain", domain)
	}
}

// refoldDKIM turns the DKIM-Signature line go-mail returns into a header value folded only
// between tags and inside b=. Removing go-mail's folds gives back exactly the tag list it signed
// (it only inserts CRLF+WSP); a fold between tags becomes "; " again under relaxed
// canonicalisation, and verifiers drop b='s value with its whitespace.
func refoldDKIM(line string) string {
	v := strings.TrimSuffix(strings.TrimPrefix(line, "DKIM-Signature:"), "\r\n")
	v = strings.TrimLeft(strings.NewReplacer("\r\n ", "", "\r\n\t", "").Replace(v), " ")
	const width = 78
	var b strings.Builder
	col := len("DKIM-Signature: ")
	for i, tag := range strings.Split(v, "; ") {
		if i > 0 {
			b.WriteByte(';')
			col++
			if col+1+len(tag) > width && !strings.HasPrefix(tag, "b=") {
				b.WriteString("\r\n")
				col = 0
			}
			b.WriteByte(' ')
			col++
		}
		if sig, ok := strings.CutPrefix(tag, "b="); ok {
			b.WriteString("b=")
			col += 2
			for len(sig) > 0 {
				if col >= width {
					b.WriteString("\r\n ")
					col = 1
				}
				n := min(len(sig), width-col)
				b.WriteString(sig[:n])
				col += n
				sig = sig[n:]
			}
			continue
		}
		b.WriteString(tag)
		col += len(tag)
	}
	return b.String()
}
