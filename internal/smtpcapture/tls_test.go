package smtpcapture_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"testing"

	gomail "github.com/wneessen/go-mail"

	"herald/internal/smtpcapture"
)

func TestSTARTTLSWithAuth(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS, err := smtpcapture.SelfSignedTLS()
	if err != nil {
		t.Fatal(err)
	}
	srv := setup(t, smtpcapture.Options{AuthUser: "herald", AuthPass: "s3cret", TLSConfig: serverTLS})

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
		gomail.WithTLSConfig(clientTLS),
		gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername("herald"), gomail.WithPassword("s3cret"))
	if err := client.DialAndSend(goMailMsg(t, "over TLS", "b@example.com")); err != nil {
		t.Fatalf("go-mail over STARTTLS: %v", err)
	}
	msgs, err := srv.WaitFor(waitCtx(t), 1)
	if err != nil || msgs[0].Subject != "over TLS" {
		t.Fatalf("WaitFor = %+v, %v", msgs, err)
	}
}
