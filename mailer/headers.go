package mailer

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
)

// Headers a client may set on a message. Everything that decides where a message goes or how it
// is parsed (From, To, Cc, Bcc, Subject, Message-ID, Date, Content-*, MIME-Version, Return-Path,
// List-*, DKIM-Signature, Received, ...) is Herald's alone.
var allowedHeaders = map[string]bool{
	"In-Reply-To":    true,
	"References":     true,
	"Auto-Submitted": true,
	"Keywords":       true,
	"Comments":       true,
}

var customHeaderRE = regexp.MustCompile(`^X-[A-Za-z0-9][A-Za-z0-9-]{0,75}$`)

const (
	maxHeaders         = 30
	maxHeaderValueLen  = 998
	reservedHeaderPref = "X-Herald-"
)

// validateHeaders checks client headers against the allow-list and returns them canonicalised.
// The error names the offending header.
func validateHeaders(in map[string]string) (map[string]string, error) {
	if len(in) > maxHeaders {
		return nil, fmt.Errorf("at most %d headers are allowed", maxHeaders)
	}
	out := make(map[string]string, len(in))
	for name, value := range in {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case allowedHeaders[canon]:
		case customHeaderRE.MatchString(name) && !strings.HasPrefix(canon, reservedHeaderPref):
		default:
			return nil, fmt.Errorf("header %q is not allowed (allowed: X-* custom headers, In-Reply-To, References, Auto-Submitted, Keywords, Comments)", truncate(name, 80))
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("header %s: value contains a line break or NUL", canon)
		}
		if len(value) > maxHeaderValueLen {
			return nil, fmt.Errorf("header %s: value is longer than %d bytes", canon, maxHeaderValueLen)
		}
		if _, dup := out[canon]; dup {
			return nil, fmt.Errorf("header %s is given twice", canon)
		}
		out[canon] = value
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
