// Package crmsync builds CRM sync workflows that do not break: durable,
// memoized steps; runs with leases; field-ownership policies; and a sync
// pass that survives rate limits, write storms, conflicting edits and
// network blips.
//
// # Runs
//
// An [Engine] runs a [Workflow] for one concurrency key (a team, a portal)
// under that key's lease in the [Store]. One run per key is live at a time:
// a second [Engine.Run] for the key gets [ErrBusy], or waits when
// [Config].WaitForLease is set. A live run renews its lease by heartbeat. When
// its process dies, the first Run after the lease expires resumes the same
// run (same [RunID]). Each lease carries a generation; a process whose lease
// was taken over can commit nothing more ([ErrLeaseLost]). A run that cannot
// renew its lease in time stops before the lease expires: its context is
// cancelled, no further step function is called, and Run returns an error
// matching [ErrLeaseLost]; the run stays open and the next start resumes it.
// A run that stops on a permanent error is closed as [RunFailed]; the key's
// next start begins a new run.
//
// # Steps
//
// [Step] runs one durable step: its JSON-encoded result is committed to the
// Store before Step returns, and a resumed run gets the stored result back
// without calling the step again. Transient errors are retried with
// exponential backoff and jitter; [RetryAfter] waits as a CRM asks;
// [Permanent] stops at once and is stored, so a resumed run does not try
// again. With [StepOpts].DeadLetter a permanently failed step parks its
// payload in the dead-letter queue and the workflow goes on with the next
// item. Letters a person marks for replay are claimed by the key's next run
// at its first start ([Run.Replays]; a resumed run keeps the letters it
// claimed and takes no new ones, since its steps are memoized); when that
// run's try fails again, the same letter becomes [DeadFailedAgain] instead
// of a second letter being parked for the record. Bookkeeping added through the [Attempt] (cursors, ledger rows, audit
// rows, dead letters) is committed with the step's result, atomically.
//
// # Stores
//
// [Store] is made of small parts: [RunStore], [StepStore], [CursorStore],
// [LedgerStore], [AuditStore] and [DeadLetterStore]. store/memory is for
// tests, store/sqlite is the embedded default (one file), and
// store/storetest is the conformance suite every backend passes.
//
// # Writing a backend
//
// Implement [Store], then run storetest.Run from a test of your package.
// The engine does retries and checkpoints; a backend only keeps what it is
// given, atomically, and checks the lease generation on every commit.
//
// The caller that opens a Store closes it; an Engine never does.
package crmsync
