package hubspot

import (
	"errors"
	"testing"

	"github.com/crmsync/crmsync"
	"github.com/stretchr/testify/assert"
)

func TestAPIErrorIsUnauthorized(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   bool
	}{{401, true}, {403, true}, {400, false}, {429, false}, {500, false}} {
		err := crmsync.Permanent(&APIError{Call: "batch/upsert contacts", Status: tc.status})
		got := errors.Is(err, crmsync.ErrUnauthorized)
		assert.Equal(t, tc.want, got, "errors.Is(status %d, ErrUnauthorized) = %v, want %v", tc.status, got, tc.want)
	}
}
