package consent

import "strings"

// UnsubscribeURL is the https link of a recipient's token: POSTed with List-Unsubscribe=One-Click
// it withdraws at once (RFC 8058); opened in a browser it is the preference centre.
func UnsubscribeURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/u/" + token
}

// UnsubscribeAddress is the mailto unsubscribe address of a token: unsubscribe+TOKEN@domain. The
// token is lower-case base32, so it survives mail systems that fold the local part's case.
func UnsubscribeAddress(domain, token string) string {
	return "unsubscribe+" + token + "@" + domain
}

// UnsubscribeMailto is the mailto URI of List-Unsubscribe.
func UnsubscribeMailto(domain, token string) string {
	return "mailto:" + UnsubscribeAddress(domain, token) + "?subject=unsubscribe"
}
