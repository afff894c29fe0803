// Package crmsync builds CRM sync workflows that do not break: durable,
// memoized steps; runs with leases; field-ownership policies; and a sync
// pass that survives rate limits, write storms, conflicting edits and
// network blips.
//
// # Syncing two CRMs
//
// [NewSync] makes a [Sync] of one object between two [CRM] clients (see
// [SyncConfig]): hubspot.Client in [github.com/crmsync/crmsync/hubspot] and
// salesforce.Client in [github.com/crmsync/crmsync/salesforce], or your own.
// A Sync is a [Workflow]: each [Engine.Run] (or [Sync.RunOnce]) makes one
// pass both ways. A pass reads each side's changes since its cursor, pairs
// records by their links (or, unlinked, by [Identity]), merges each pair
// with the [Policy] and writes the patches in batches, every read and
// write a durable step. It reports what it did in a [SyncReport];
// [Sync.Plan] is a dry run that writes nothing. Each run's conflicts go to
// every [ConflictHandler] of [SyncConfig].OnConflict ([SlackNotifier] posts
// them to Slack), and held ones wait in the [ConflictStore] for a person's
// choice.
//
// A CRM may implement optional interfaces that change how the pass reads
// it:
//   - [ChangeLagger]: its change reads show a write only after a delay
//     (HubSpot search); cursors stay that far behind, and a slower delayed
//     window covers older changes again ([SyncConfig].DelayedLag): read, or
//     on a [ChangeCounter] counted and read only when the count differs.
//   - [WholeBinReader]: its archived reads list the whole recycle bin
//     (HubSpot); they run every [SyncConfig].ArchivedEvery, not every pass.
//   - [IDResolver]: a merge gives the merged record a new id that its old
//     ids still resolve to (HubSpot); before a record read archived is
//     carried over as archived, the pass asks whether it lives on under
//     another id, and if so moves the link instead.
//   - [MergedAwayLister]: a merge names its winner only on the deleted
//     losers (Salesforce); before a live record with no link and no match
//     is created on the other side, the pass asks whether it is a merge's
//     winner whose loser's deletion it has not read yet, and if so moves
//     the loser's link to it instead.
//
// A CRM without them is taken to show writes at once, to read deletions by
// window, and to name a merge's winner on the loser it reads
// ([Record].MergedInto). The hubspot client implements the first three;
// the salesforce client the last, which a [Routed] CRM of it passes on,
// asking it object by object.
//
// # Field ownership
//
// A [Policy] maps one object's fields between systems A and B, one
// [FieldRule] each, and says whose value wins: [Owner], [MostRecent],
// [OneWay], [PreferUnlessBlank], [Never] or your own [Func]. Values are
// compared after [Normalize], and a [Transform] ([PicklistMap], [OwnerMap])
// maps them between the sides. [NewPolicy] checks a policy and names every
// problem ([PolicyError]). [Merge] is the pure three-way merge of one pair
// against the values last synced: it returns a patch per side, the
// conflicts, and the new base. [SchemaDiff] and [UnknownFields] report
// schema drift.
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
// [Every], [Schedule] (with a cron from
// [github.com/crmsync/crmsync/schedule]) and [RunKeys] start runs from one
// process; [github.com/crmsync/crmsync/worker] shares many keys among many
// processes on one Store.
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
// of a second letter being parked for the record. Bookkeeping added through
// the [Attempt] (cursors, ledger rows, audit rows, dead letters) is committed
// with the step's result, atomically.
//
// # Rate limits
//
// A [Limiter] paces the calls to one CRM account: [Throttle] (a token
// bucket) and [WindowLimiter] (a rolling window, as HubSpot counts) within
// one process, [github.com/crmsync/crmsync/limit/redislimit] across
// processes. A CRM client that runs out of waiting returns a
// [RateLimitError], which the step waits out; [ErrDailyLimit] stops the run.
//
// # Stores
//
// [Store] is made of small parts: [RunStore], [StepStore], [CursorStore],
// [LedgerStore], [AuditStore], [DeadLetterStore], [LinkStore] and
// [ConflictStore]. The backends:
//   - [github.com/crmsync/crmsync/store/memory]: in process, for tests and
//     short programs; nothing survives the process.
//   - [github.com/crmsync/crmsync/store/sqlite]: the embedded default, one
//     file, for one machine.
//   - [github.com/crmsync/crmsync/store/postgres]: PostgreSQL, for many
//     workers on many machines.
//   - [github.com/crmsync/crmsync/store/storespec] opens either of the last
//     two from one string ("sqlite:PATH", a path, or a PostgreSQL DSN), as
//     the crmsync command's -store flag does.
//
// The caller that opens a Store closes it; an Engine never does.
//
// # Fakes
//
// [github.com/crmsync/crmsync/hubspot/hubspottest] and
// [github.com/crmsync/crmsync/salesforce/salesforcetest] serve fake HubSpot
// and Salesforce APIs on the real paths and wire formats, with the real
// limits and, on request, faults and hostile behaviours (search lag, clock
// skew, refused batches). Both have the same shape: New(Config), then Start
// and Close, no test needed. Point the clients at them to test your own
// workflow; the crmsync command serves them too (crmsync fake).
//
// # Operators
//
// [Config.Observer] follows runs, step attempts, rate-limit waits and audit
// rows: [github.com/crmsync/crmsync/telemetry] turns them into OpenTelemetry
// spans and metrics. A [Sync] pass stores each account's daily API use in
// its report ([BudgetReporter]); [SchemaDigest] posts schema changes to
// Slack once a day. The crmsync command's serve subcommand
// ([github.com/crmsync/crmsync/console]) shows all of it, and acts on held
// conflicts and dead letters, in a browser.
//
// # Writing a backend
//
// Implement [Store], then run
// [github.com/crmsync/crmsync/store/storetest.Run] from a test of your
// package. The engine does retries and checkpoints; a backend only keeps
// what it is given, atomically, and checks the lease generation on every
// commit. A backend may also implement [RunStarter] and [RunEnder] to start
// and end a run in one round trip each (the memory, sqlite and postgres
// stores do); without them the engine calls the parts' methods one by one.
// [TriggerStore] (pending triggers per key, for package trigger) and
// [PositionStore] (change-stream positions, such as Pub/Sub replay ids)
// are optional too; storetest checks them when a backend has them.
package crmsync
