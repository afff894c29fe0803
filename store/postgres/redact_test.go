package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dsnShapes is every shape a PostgreSQL connection string takes, each with
// its secret, and what RedactDSN makes of it.
var dsnShapes = []struct {
	name, in, want, secret string
}{
	{"url", "postgres://bob:S3cretPW@db.example.com:5432/crm?sslmode=disable", "postgres://bob:xxxxx@db.example.com:5432/crm?sslmode=disable", "S3cretPW"},
	{"postgresql url", "postgresql://bob:S3cretPW@db.example.com/crm", "postgresql://bob:xxxxx@db.example.com/crm", "S3cretPW"},
	{"url with @ and / in the password", "postgres://bob:S3c@ret/PW@db/crm", "postgres://bob:xxxxx@db/crm", "ret/PW"},
	{"url with ? in the password", "postgres://bob:S3c?retPW@db/crm", "postgres://bob:xxxxx@db/crm", "retPW"},
	{"url with an Azure user", "postgres://bob@server:S3cretPW@db/crm", "postgres://bob@server:xxxxx@db/crm", "S3cretPW"},
	{"url with an escaped password", "postgres://bob:S3cret%40PW@db/crm", "postgres://bob:xxxxx@db/crm", "S3cret"},
	{"url password parameter", "postgres://bob@db/crm?password=S3cretPW&sslmode=require", "postgres://bob@db/crm?password=xxxxx&sslmode=require", "S3cretPW"},
	{"url sslpassword parameter", "postgres://bob:S3cretPW@db/crm?sslmode=verify-full&sslpassword=K3yPW&sslkey=k.pem", "postgres://bob:xxxxx@db/crm?sslmode=verify-full&sslpassword=xxxxx&sslkey=k.pem", "K3yPW"},
	{"url first parameter in upper case", "postgresql://db/crm?PASSWORD=S3cretPW", "postgresql://db/crm?PASSWORD=xxxxx", "S3cretPW"},
	{"keyword/value", "host=127.0.0.1 user=postgres password=S3cretPW dbname=x", "host=127.0.0.1 user=postgres password=xxxxx dbname=x", "S3cretPW"},
	{"keyword/value first", "password=S3cretPW host=h", "password=xxxxx host=h", "S3cretPW"},
	{"keyword/value spaces around =", "host=h password = S3cretPW dbname=x", "host=h password = xxxxx dbname=x", "S3cretPW"},
	{"keyword/value quoted", "host=h password='S3cret PW' dbname=x", "host=h password=xxxxx dbname=x", "cret PW"},
	{"keyword/value quoted with escapes", `host=h password='S3\'cret\\PW' dbname=x`, "host=h password=xxxxx dbname=x", "cret"},
	{"keyword/value unterminated quote", "host=h password='S3cret PW dbname=x", "host=h password=xxxxx", "PW"},
	{"keyword/value sslpassword", "host=h sslmode=verify-full sslkey=k.pem sslpassword=K3yPW dbname=x", "host=h sslmode=verify-full sslkey=k.pem sslpassword=xxxxx dbname=x", "K3yPW"},
	{"keyword/value both", "host=h password=S3cretPW sslpassword='K3y PW'", "host=h password=xxxxx sslpassword=xxxxx", "K3y"},
	{"quoted in an error", `store "host=h password=S3cretPW dbname=x": cannot connect`, `store "host=h password=xxxxx dbname=x": cannot connect`, "S3cretPW"},
	{"url in an error", "open `postgres://bob:S3cretPW@h/db`: refused", "open `postgres://bob:xxxxx@h/db`: refused", "S3cretPW"},
	{"two in a line", "a=postgres://u:P1x@h/db b=postgres://u:P2x@h/db", "a=postgres://u:xxxxx@h/db b=postgres://u:xxxxx@h/db", "P2x"},
	{"no password", "postgres://bob@db.example.com:5432/crm?sslmode=disable", "postgres://bob@db.example.com:5432/crm?sslmode=disable", ""},
	{"an @ in the query is no password", "postgres://h:5432/db?user=a@b", "postgres://h:5432/db?user=a@b", ""},
	{"passfile is not a password", "host=h passfile=/etc/pgpass", "host=h passfile=/etc/pgpass", ""},
	{"a path", "sqlite:/var/lib/crmsync/demo.db", "sqlite:/var/lib/crmsync/demo.db", ""},
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range dsnShapes {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactDSN(tc.in)
			assert.Equal(t, tc.want, got)
			if tc.secret != "" {
				assert.NotContains(t, got, tc.secret)
			}
			assert.Equal(t, got, RedactDSN(got), "redacting twice changes nothing")
		})
	}
}

// Open's errors never carry a password, whatever the DSN's shape and
// whatever failed: parsing, connecting.
func TestOpenErrorsCarryNoPassword(t *testing.T) {
	for _, tc := range []struct{ name, dsn, secret string }{
		{"url refused", "postgres://bob:S3cretPW@127.0.0.1:1/db?sslmode=disable", "S3cretPW"},
		{"url bad port", "postgres://bob:S3cretPW@127.0.0.1:notaport/db", "S3cretPW"},
		{"url parameter bad sslmode", "postgres://bob@127.0.0.1:1/db?password=S3cretPW&sslmode=bogus", "S3cretPW"},
		{"url sslpassword no cert", "postgres://bob@127.0.0.1:1/db?sslpassword=K3yPW&sslmode=require&sslkey=/nonexistent", "K3yPW"},
		{"keyword/value refused", "host=127.0.0.1 port=1 password=S3cretPW dbname=x sslmode=disable", "S3cretPW"},
		{"keyword/value bad port", "host=127.0.0.1 port=x password=S3cretPW dbname=x", "S3cretPW"},
		{"keyword/value quoted bad sslmode", "host=127.0.0.1 password='S3cret PW' sslmode=bogus", "cret PW"},
		{"keyword/value unterminated quote", "host=127.0.0.1 password='S3cret PW dbname=x", "PW"},
		{"keyword/value sslpassword", "host=127.0.0.1 sslpassword=K3yPW sslmode=require sslkey=/nonexistent", "K3yPW"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), Config{DSN: tc.dsn, ConnectTimeout: 2 * time.Second})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), tc.secret)
			assert.False(t, strings.Contains(err.Error(), "\n"), "error on one line: %q", err)
		})
	}
}
