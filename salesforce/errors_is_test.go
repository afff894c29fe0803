package salesforce

import (
	"errors"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
)

func TestAPIErrorIsUnauthorized(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   bool
	}{{401, "INVALID_SESSION_ID", true}, {403, "INSUFFICIENT_ACCESS", true}, {403, "REQUEST_LIMIT_EXCEEDED", false}, {400, "INVALID_FIELD", false}} {
		err := crmsync.Permanent(&APIError{Call: "update", Status: tc.status, ErrorCode: tc.code})
		got := errors.Is(err, crmsync.ErrUnauthorized)
		assert.Equal(t, tc.want, got, "errors.Is(%d %s, ErrUnauthorized) = %v, want %v", tc.status, tc.code, got, tc.want)
	}
}
