package consent

import (
	"net"
	"net/http"
	"strings"
	"unicode/utf8"
)

// requestEvidence is the evidence of a recipient's request: the peer's IP (r.RemoteAddr, never
// X-Forwarded-For, which the client writes itself; a trusted proxy in front must set RemoteAddr,
// e.g. with chi's RealIP middleware) and the user agent, cleaned so that a garbled header cannot
// make the ledger refuse the withdrawal.
func requestEvidence(r *http.Request) Evidence {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return Evidence{IP: evidenceText(host, 64), UserAgent: evidenceText(r.UserAgent(), 1000)}
}

// evidenceText drops invalid UTF-8 and control characters and cuts s to at most max bytes.
func evidenceText(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "") {
		if r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
