package tracking

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// maxUserAgent is the longest user agent kept, in bytes.
const maxUserAgent = 512

// remoteIP is the peer's address (r.RemoteAddr, never X-Forwarded-For, which the client writes
// itself: a trusted proxy in front must set RemoteAddr, as for the consent pages).
func remoteIP(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// storedIP is the address as tracking_events keeps it: the whole address when the workspace
// keeps full IPs, otherwise its /24 (IPv4) or /48 (IPv6) network in prefix notation
// ("203.0.113.0/24"). An unknown address is "".
func storedIP(a netip.Addr, full bool) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	if full {
		return a.String()
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// cleanUserAgent makes a user agent storable: valid UTF-8 without control characters (COPY
// refuses NUL and invalid UTF-8), at most maxUserAgent bytes.
func cleanUserAgent(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return -1
			}
			return r
		}, strings.ToValidUTF8(s, ""))
	}
	if len(s) > maxUserAgent {
		s = s[:maxUserAgent]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
