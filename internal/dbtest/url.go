package dbtest

import (
	"net/url"
	"strings"
)

// withDatabaseURL returns base with its database replaced by name. A postgres:// URL keeps its
// host, user and query (which may carry host=/socket/dir); a keyword/value string gets a dbname
// appended, which overrides an earlier one.
func withDatabaseURL(base, name string) string {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	return base + " dbname=" + name
}
