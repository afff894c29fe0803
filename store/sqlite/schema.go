package sqlite

// migrations are the schema versions in order; migrations[i] takes the
// schema from version i to i+1. Never edit a released migration: add one.
var migrations = []string{
	// 1: runs, leases, steps, cursors, ledger, audit, dead letters.
	`
CREATE TABLE runs (
	id          TEXT PRIMARY KEY,
	key         TEXT NOT NULL,
	workflow    TEXT NOT NULL,
	status      TEXT NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL DEFAULT 0,
	attempts    INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	report      BLOB,
	seq         INTEGER NOT NULL
);
CREATE INDEX runs_key_seq ON runs (key, seq);
CREATE INDEX runs_seq ON runs (seq);
CREATE UNIQUE INDEX runs_open_key ON runs (key) WHERE status = 'open';
CREATE INDEX runs_finished ON runs (finished_at) WHERE status = 'finished';

CREATE TABLE leases (
	key        TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	generation INTEGER NOT NULL,
	run        TEXT NOT NULL,
	expires    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE steps (
	run      TEXT NOT NULL,
	step     TEXT NOT NULL,
	result   BLOB,
	error    TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL,
	done     INTEGER NOT NULL,
	PRIMARY KEY (run, step)
) WITHOUT ROWID;

CREATE TABLE cursors (
	key   TEXT NOT NULL,
	name  TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (key, name)
) WITHOUT ROWID;

CREATE TABLE ledger (
	idem_key  TEXT PRIMARY KEY,
	run       TEXT NOT NULL,
	step      TEXT NOT NULL,
	system    TEXT NOT NULL,
	record_id TEXT NOT NULL,
	result    BLOB,
	at        INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	time       INTEGER NOT NULL,
	key        TEXT NOT NULL,
	run        TEXT NOT NULL,
	step       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	system     TEXT NOT NULL,
	record_ids TEXT NOT NULL,
	idem_key   TEXT NOT NULL,
	detail     BLOB
);
CREATE INDEX audit_run ON audit (run, id);
CREATE INDEX audit_time ON audit (time);
CREATE TABLE audit_records (
	record_id TEXT NOT NULL,
	audit_id  INTEGER NOT NULL,
	PRIMARY KEY (record_id, audit_id)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	key        TEXT NOT NULL,
	run        TEXT NOT NULL,
	step       TEXT NOT NULL,
	system     TEXT NOT NULL,
	record_id  TEXT NOT NULL,
	payload    BLOB,
	error      TEXT NOT NULL,
	status     TEXT NOT NULL,
	claimed_by TEXT NOT NULL DEFAULT '',
	created    INTEGER NOT NULL,
	updated    INTEGER NOT NULL
);
CREATE INDEX dead_letters_key_status ON dead_letters (key, status);
`,
	// 2: links with their base snapshots; conflicts.
	`
CREATE TABLE links (
	key        TEXT NOT NULL,
	a_id       TEXT NOT NULL,
	b_id       TEXT NOT NULL,
	base       BLOB,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (key, a_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX links_b ON links (key, b_id);

CREATE TABLE conflicts (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT NOT NULL UNIQUE,
	key         TEXT NOT NULL,
	state       TEXT NOT NULL,
	field       TEXT NOT NULL,
	body        BLOB NOT NULL
);
CREATE INDEX conflicts_key_state ON conflicts (key, state);
`,
	// 3: one index for pruning closed runs (finished or failed) in place
	// of the one for finished runs only.
	`
DROP INDEX runs_finished;
CREATE INDEX runs_closed ON runs (finished_at) WHERE status IN ('finished', 'failed');
`,
	// 4: pending triggers per key and system, merged; change stream positions.
	`
CREATE TABLE triggers (
	key    TEXT NOT NULL,
	system TEXT NOT NULL,
	full   INTEGER NOT NULL,
	reason TEXT NOT NULL,
	count  INTEGER NOT NULL,
	first  INTEGER NOT NULL,
	last   INTEGER NOT NULL,
	seq    INTEGER NOT NULL,
	PRIMARY KEY (key, system)
) WITHOUT ROWID;
CREATE INDEX triggers_seq ON triggers (seq);
CREATE TABLE trigger_seq (n INTEGER NOT NULL);
INSERT INTO trigger_seq (n) VALUES (0);

CREATE TABLE positions (
	stream TEXT PRIMARY KEY,
	pos    BLOB NOT NULL
) WITHOUT ROWID;
`,
	// 5: fewer pages written per run. The key's open run is kept on its
	// lease row, which every start and end writes anyway, in place of an
	// index of open runs that each run wrote twice (an entry at its start,
	// its removal at its end); a run's seq is its rowid, in place of an
	// index of seq that each start wrote. A closed run leaves the index of
	// closed runs once its steps are pruned (kept = 0), so that pruning
	// reads only runs it has not pruned yet.
	`
ALTER TABLE leases ADD COLUMN open_run TEXT NOT NULL DEFAULT '';
UPDATE leases SET open_run = COALESCE((SELECT id FROM runs WHERE runs.key = leases.key AND runs.status = 'open'), '');
INSERT INTO leases (key, holder, generation, run, expires, open_run)
	SELECT key, '', 0, '', 0, id FROM runs WHERE status = 'open' AND key NOT IN (SELECT key FROM leases);
CREATE TABLE runs_v5 (
	seq         INTEGER PRIMARY KEY,
	id          TEXT NOT NULL UNIQUE,
	key         TEXT NOT NULL,
	workflow    TEXT NOT NULL,
	status      TEXT NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL DEFAULT 0,
	attempts    INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	report      BLOB,
	kept        INTEGER NOT NULL DEFAULT 1
);
INSERT INTO runs_v5 (seq, id, key, workflow, status, started_at, finished_at, attempts, error, report, kept)
	SELECT seq, id, key, workflow, status, started_at, finished_at, attempts, error, report,
		status NOT IN ('finished', 'failed') OR EXISTS (SELECT 1 FROM steps WHERE steps.run = runs.id)
	FROM runs ORDER BY seq;
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
CREATE INDEX runs_key_seq ON runs (key, seq);
CREATE INDEX runs_closed ON runs (finished_at) WHERE status IN ('finished', 'failed') AND kept = 1;
`,
}
