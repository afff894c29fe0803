package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// secretSpecs are store specs of every DSN shape, each holding a password
// ("S3cretPW", or "S3cret PW and more" where quoted) that no output may show.
var secretSpecs = []string{
	"postgres://postgres:S3cretPW@127.0.0.1:1/db?sslmode=disable",
	"postgresql://postgres:S3cretPW@127.0.0.1:1/db?sslmode=disable",
	"postgres://postgres:S3cretPW@127.0.0.1:notaport/db",
	"postgres://postgres@127.0.0.1:1/db?password=S3cretPW&sslmode=disable",
	"postgres://postgres@127.0.0.1:1/db?sslpassword=S3cretPW&sslmode=require&sslkey=/nonexistent",
	"host=127.0.0.1 port=1 user=postgres password=S3cretPW dbname=x sslmode=disable",
	"host=127.0.0.1 port=1 user=postgres password='S3cretPW and more' dbname=x sslmode=disable",
	"host=127.0.0.1 user=postgres password='S3cretPW and more dbname=x",
	"host=127.0.0.1 port=1 sslpassword=S3cretPW sslmode=require sslkey=/nonexistent",
	"mysql://root:S3cretPW@127.0.0.1/db",
}

// TestNoSecretInOutput runs the command in a child process with a store
// spec of every shape, for the commands that open a store: the password
// appears neither on stdout nor on stderr, and the error is one line.
func TestNoSecretInOutput(t *testing.T) {
	if args := os.Getenv("CRMSYNC_SECRET_CHILD_ARGS"); args != "" {
		require.NoError(t, json.Unmarshal([]byte(args), &os.Args))
		main()
		return
	}
	if testing.Short() {
		t.Skip("runs the command in child processes")
	}
	for _, spec := range secretSpecs {
		for _, args := range [][]string{
			{"crmsync", "-store", spec, "status"},
			{"crmsync", "runs", "-store", spec},
			{"crmsync", "-store", spec, "demo", "-seed", "5"},
			{"crmsync", "demo", "-store", spec, "-seed", "5"},
		} {
			b, err := json.Marshal(args)
			require.NoError(t, err)
			cmd := exec.Command(os.Args[0], "-test.run=^TestNoSecretInOutput$")
			cmd.Env = append(os.Environ(), "CRMSYNC_SECRET_CHILD_ARGS="+string(b))
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err = cmd.Run()
			require.Error(t, err, "%v must fail", args)
			for _, s := range []string{"S3cretPW", "and more"} {
				assert.NotContains(t, out.String(), s, "stdout of %v", args)
				assert.NotContains(t, errOut.String(), s, "stderr of %v", args)
			}
			assert.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one error line for %v:\n%s", args, errOut.String())
		}
	}
}
