// Package fold gives case-insensitive map keys for the fake CRMs' indexes.
package fold

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Key maps s to a key that two strings share exactly when strings.EqualFold
// holds for them: each rune becomes one canonical member of its
// case-folding orbit (the lower-case ASCII letter where the orbit has one,
// as for K and the Kelvin sign, else the orbit's smallest rune).
func Key(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			c = min(c, f)
		}
		if c < utf8.RuneSelf {
			c = unicode.ToLower(c)
		}
		b = utf8.AppendRune(b, c)
	}
	return string(b)
}
