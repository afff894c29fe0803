package main

import (
	"context"

	"github.com/crmsync/crmsync/store/storespec"
)

// openStore opens the existing store that spec names (see package
// storespec): a missing or empty file, or a database without the crmsync
// schema, is an error and is left as it was. A spec that does not parse is
// a usage error. Errors name the spec with its password redacted.
func openStore(ctx context.Context, spec string) (storespec.Store, error) {
	sp, err := storespec.Parse(spec)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	return sp.Open(ctx, storespec.Existing)
}
