package smtpcapture

import (
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// session is one client connection's SMTP transaction state.
type session struct {
	srv    *Server
	conn   net.Conn // the transport, closed on ErrDropConnection
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

// newSession is the go-smtp backend. go-smtp calls it at EHLO, and again after STARTTLS, so
// c.Conn() is the current transport.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: s, conn: c.Conn()}, nil
}

func (s *Server) authRequired() bool { return s.opts.AuthUser != "" || s.opts.AuthPass != "" }

// AuthMechanisms offers PLAIN when credentials are configured, nothing otherwise.
func (ss *session) AuthMechanisms() []string {
	if !ss.srv.authRequired() {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth checks PLAIN credentials against Options.AuthUser and AuthPass.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.srv.authRequired() {
		return nil, smtp.ErrAuthUnsupported
	}
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(ss.srv.opts.AuthUser)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(ss.srv.opts.AuthPass)) == 1
		if !userOK || !passOK || (identity != "" && identity != user) {
			ss.srv.log.Info("smtp capture auth failed")
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

// Mail starts a transaction, refusing it until the client authenticated if that is required.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.srv.authRequired() && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from, ss.to = from, nil
	return nil
}

// Rcpt adds a recipient unless RcptHook rejects it.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if hook := ss.srv.opts.RcptHook; hook != nil {
		if err := hook(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

// Data reads the message, lets DataHook judge it and stores it if accepted.
func (ss *session) Data(r io.Reader) error {
	srv := ss.srv
	srv.attempts.Add(1)
	if srv.opts.Keep < 0 && srv.opts.DataHook == nil {
		// Count only: nothing looks at the content, so do not buffer it.
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			return err
		}
		id := srv.store.add(&Message{})
		srv.log.Debug("smtp capture message counted", "id", id, "size", n)
		return nil
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := newMessage(ss.from, slices.Clone(ss.to), raw, time.Now())
	if hook := srv.opts.DataHook; hook != nil {
		if err := hook(m); err != nil {
			if errors.Is(err, ErrDropConnection) {
				srv.log.Debug("smtp capture dropping connection", "size", len(raw))
				_ = ss.conn.Close()
			} else {
				srv.log.Debug("smtp capture message refused", "size", len(raw), "err", err)
			}
			return err
		}
	}
	id := srv.store.add(m)
	srv.log.Debug("smtp capture message accepted", "id", id, "size", len(raw), "rcpts", len(m.To))
	return nil
}

// Reset discards the current transaction.
func (ss *session) Reset() { ss.from, ss.to = "", nil }

// Logout releases nothing: the session holds no resources.
func (ss *session) Logout() error { return nil }
