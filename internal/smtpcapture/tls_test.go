package smtpcapture_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/smtp"
	"net/textproto"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"herald/internal/smtpcapture"
)

// selfSigned returns a certificate for 127.0.0.1 valid for an hour.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "capture.local"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSTARTTLSWithAuth(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{
		AuthUser:  "herald",
		AuthPass:  "s3cret",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12},
	})

	// Without TLS, AUTH is refused even with the right credentials.
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	err = c.Auth(smtp.PlainAuth("", "herald", "s3cret", "127.0.0.1"))
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) || tpErr.Code/100 != 5 {
		t.Fatalf("AUTH before STARTTLS: %v, want refusal", err)
	}

	client := goMailClient(t, srv,
		gomail.WithTLSPolicy(gomail.TLSMandatory),
		gomail.WithTLSConfig(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}), //nolint:gosec // self-signed test cert
		gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername("herald"), gomail.WithPassword("s3cret"))
	if err := client.DialAndSend(goMailMsg(t, "over TLS", "b@example.com")); err != nil {
		t.Fatalf("go-mail over STARTTLS: %v", err)
	}
	msgs, err := srv.WaitFor(waitCtx(t), 1)
	if err != nil || msgs[0].Subject != "over TLS" {
		t.Fatalf("WaitFor = %+v, %v", msgs, err)
	}
}
