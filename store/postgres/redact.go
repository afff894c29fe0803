package postgres

import (
	"regexp"
	"strings"
)

// redacted replaces a secret.
const redacted = "xxxxx"

var (
	// urlToken is "scheme://" and what follows up to a blank or a quote.
	urlToken = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'`]*")
	// secretParam finds a password or sslpassword given as key=value (a
	// key=value DSN) or as a URL query parameter, quoted ('a b', with \'
	// escapes, an unterminated quote running to the end) or not (up to a
	// blank, a quote or, after ? or &, the next &).
	secretParam = regexp.MustCompile(`(?i)(^|[\s?&;,("'` + "`" + `])((?:ssl)?password)(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s"'` + "`" + `&]*)`)
)

// RedactDSN returns s with every password in it replaced by "xxxxx": the
// password of a URL's user information (postgres://user:PW@host/db, any
// scheme) and every password or sslpassword parameter, whether key=value
// (host=h password=PW, password='a b') or a URL query parameter
// (?password=PW&sslpassword=PW). s may be a DSN or any text holding some,
// such as an error message; the rest of it is left as it is. Every error
// of this package passes through it.
func RedactDSN(s string) string {
	s = urlToken.ReplaceAllStringFunc(s, redactUserinfo)
	return secretParam.ReplaceAllStringFunc(s, func(m string) string {
		sub := secretParam.FindStringSubmatch(m)
		return sub[1] + sub[2] + sub[3] + redacted
	})
}

// redactUserinfo redacts the password of one URL. Its user information
// ends at the last @ before the query (a password may hold an unescaped @
// or /); failing that, at the last @ at all, if no / follows the colon (a
// password may hold an unescaped ? or #, but an @ in the query of
// postgres://h:5432/db?user=a@b is no user information).
func redactUserinfo(u string) string {
	i := strings.Index(u, "://") + 3
	q := len(u)
	if k := strings.IndexAny(u[i:], "?#"); k >= 0 {
		q = i + k
	}
	at := strings.LastIndexByte(u[:q], '@')
	inQuery := false
	if at < i {
		at, inQuery = strings.LastIndexByte(u, '@'), true
		if at < i {
			return u
		}
	}
	colon := strings.IndexByte(u[i:at], ':')
	if colon < 0 {
		return u
	}
	colon += i
	if inQuery && strings.ContainsRune(u[colon:at], '/') {
		return u
	}
	return u[:colon+1] + redacted + u[at:]
}
