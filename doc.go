// Package crmsync builds CRM sync workflows that do not break: durable,
// memoized steps; runs with leases; field-ownership policies; and a sync
// pass that survives rate limits, write storms, conflicting edits and
// network blips.
package crmsync
