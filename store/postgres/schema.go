package postgres

// migrations are the schema versions in order; migrations[i] takes the
// schema from version i to i+1. Every table is written as {s}.name and
// {s} becomes the quoted schema name. Never edit a released migration: add
// one. Times are bigint nanoseconds since the Unix epoch (0 for the zero
// time), as the caller passed them: the server's clock is never used.
var migrations = []string{
	// 1: runs, leases, steps, cursors, ledger, audit, dead letters, links, conflicts.
	`
CREATE TABLE {s}.runs (
	id          text PRIMARY KEY,
	key         text NOT NULL,
	workflow    text NOT NULL,
	status      text NOT NULL,
	started_at  bigint NOT NULL,
	finished_at bigint NOT NULL DEFAULT 0,
	attempts    integer NOT NULL DEFAULT 0,
	error       text NOT NULL DEFAULT '',
	report      bytea,
	seq         bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX runs_key_seq ON {s}.runs (key, seq);
CREATE INDEX runs_seq ON {s}.runs (seq);
CREATE UNIQUE INDEX runs_open_key ON {s}.runs (key) WHERE status = 'open';
CREATE INDEX runs_finished ON {s}.runs (finished_at) WHERE status = 'finished';

CREATE TABLE {s}.leases (
	key        text PRIMARY KEY,
	holder     text NOT NULL,
	generation bigint NOT NULL,
	run        text NOT NULL,
	expires    bigint NOT NULL
);

CREATE TABLE {s}.steps (
	run      text NOT NULL,
	step     text NOT NULL,
	result   bytea,
	error    text NOT NULL DEFAULT '',
	attempts integer NOT NULL,
	done     bigint NOT NULL,
	PRIMARY KEY (run, step)
);

CREATE TABLE {s}.cursors (
	key   text NOT NULL,
	name  text NOT NULL,
	value text NOT NULL,
	PRIMARY KEY (key, name)
);

CREATE TABLE {s}.ledger (
	idem_key  text PRIMARY KEY,
	run       text NOT NULL,
	step      text NOT NULL,
	system    text NOT NULL,
	record_id text NOT NULL,
	result    bytea,
	at        bigint NOT NULL
);

CREATE TABLE {s}.audit (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time       bigint NOT NULL,
	key        text NOT NULL,
	run        text NOT NULL,
	step       text NOT NULL,
	kind       text NOT NULL,
	system     text NOT NULL,
	record_ids text[] NOT NULL,
	idem_key   text NOT NULL,
	detail     bytea
);
CREATE INDEX audit_run ON {s}.audit (run, id);
CREATE INDEX audit_key ON {s}.audit (key, id);
CREATE INDEX audit_time ON {s}.audit (time);
CREATE INDEX audit_record_ids ON {s}.audit USING gin (record_ids);

CREATE TABLE {s}.dead_letters (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key        text NOT NULL,
	run        text NOT NULL,
	step       text NOT NULL,
	system     text NOT NULL,
	record_id  text NOT NULL,
	payload    bytea,
	error      text NOT NULL,
	status     text NOT NULL,
	claimed_by text NOT NULL DEFAULT '',
	created    bigint NOT NULL,
	updated    bigint NOT NULL
);
CREATE INDEX dead_letters_key_status ON {s}.dead_letters (key, status);

CREATE TABLE {s}.links (
	key        text NOT NULL,
	a_id       text NOT NULL,
	b_id       text NOT NULL,
	base       bytea,
	updated_at bigint NOT NULL,
	PRIMARY KEY (key, a_id)
);
CREATE UNIQUE INDEX links_b ON {s}.links (key, b_id);

CREATE TABLE {s}.conflicts (
	seq   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id    text NOT NULL UNIQUE,
	key   text NOT NULL,
	state text NOT NULL,
	field text NOT NULL,
	body  bytea NOT NULL
);
CREATE INDEX conflicts_key_state ON {s}.conflicts (key, state);
`,
	// 2: start_run, which takes a key's lease and starts or resumes its run
	// in one statement; one index for pruning closed runs (finished or
	// failed) in place of the one for finished runs only.
	`
DROP INDEX {s}.runs_finished;
ALTER TABLE {s}.leases ADD COLUMN token bigint NOT NULL DEFAULT 0;
CREATE INDEX runs_closed ON {s}.runs (finished_at) WHERE status IN ('finished', 'failed');

CREATE FUNCTION {s}.start_run(p_key text, p_holder text, p_workflow text, p_new_run text, p_now bigint, p_expires bigint, p_token bigint)
RETURNS TABLE (o_generation bigint, o_id text, o_key text, o_workflow text, o_status text, o_started_at bigint,
	o_finished_at bigint, o_attempts integer, o_error text, o_report bytea)
LANGUAGE plpgsql AS $$
DECLARE
	l {s}.leases%ROWTYPE;
	r {s}.runs%ROWTYPE;
BEGIN
	-- Make sure the lease row exists, then lock it: concurrent starters of
	-- one key queue here, and commits under the old generation (which hold
	-- FOR KEY SHARE) finish first.
	INSERT INTO {s}.leases AS x (key, holder, generation, run, expires) VALUES (p_key, '', 0, '', 0)
		ON CONFLICT (key) DO NOTHING;
	SELECT * INTO l FROM {s}.leases x WHERE x.key = p_key FOR UPDATE;
	IF l.run <> '' AND l.expires > p_now THEN
		RAISE EXCEPTION 'key % is busy', p_key USING ERRCODE = 'CS001', DETAIL = l.holder, HINT = l.expires::text;
	END IF;
	UPDATE {s}.runs x SET attempts = x.attempts + 1 WHERE x.key = p_key AND x.status = 'open' RETURNING * INTO r;
	IF NOT FOUND THEN
		INSERT INTO {s}.runs AS x (id, key, workflow, status, started_at, attempts)
			VALUES (p_new_run, p_key, p_workflow, 'open', p_now, 1) RETURNING * INTO r;
	END IF;
	UPDATE {s}.leases x SET holder = p_holder, generation = l.generation + 1, run = r.id, expires = p_expires, token = p_token
		WHERE x.key = p_key;
	-- Only a run's first start claims letters; a resumed run gets its own back.
	IF r.attempts = 1 THEN
		UPDATE {s}.dead_letters x SET status = 'replayed', claimed_by = r.id, updated = p_now
			WHERE x.key = p_key AND x.status = 'replay';
	END IF;
	RETURN QUERY SELECT l.generation + 1, r.id, r.key, r.workflow, r.status, r.started_at, r.finished_at, r.attempts, r.error, r.report;
END
$$;
`,
	// 3: pending triggers per key and system, merged; change stream positions.
	`
CREATE SEQUENCE {s}.trigger_seq;
CREATE TABLE {s}.triggers (
	key    text NOT NULL,
	system text NOT NULL,
	"full" boolean NOT NULL,
	reason text NOT NULL,
	count  bigint NOT NULL,
	first  bigint NOT NULL,
	last   bigint NOT NULL,
	seq    bigint NOT NULL,
	PRIMARY KEY (key, system)
);
CREATE INDEX triggers_seq ON {s}.triggers (seq);

CREATE TABLE {s}.positions (
	stream text PRIMARY KEY,
	pos    bytea NOT NULL
);
`,
	// 4: pruning reads only runs it has not pruned yet. A closed run leaves
	// the index of closed runs once its steps are pruned (kept = false): a
	// run's record is kept, and the prune no longer reads and probes every
	// run ever closed. Existing runs start pruned and only those that still
	// have steps, or are not closed, are marked kept: the migration writes
	// the recent runs, not the whole history.
	`
ALTER TABLE {s}.runs ADD COLUMN kept boolean NOT NULL DEFAULT false;
ALTER TABLE {s}.runs ALTER COLUMN kept SET DEFAULT true;
UPDATE {s}.runs SET kept = true WHERE id IN (SELECT run FROM {s}.steps);
UPDATE {s}.runs SET kept = true WHERE status NOT IN ('finished', 'failed') AND NOT kept;
DROP INDEX {s}.runs_closed;
CREATE INDEX runs_closed_kept ON {s}.runs (finished_at) WHERE status IN ('finished', 'failed') AND kept;
`,
	// 5: a run's close is a HOT update: no index of runs holds its status
	// or finish time, so the close writes no index entry. A key's open run
	// is found through its lease row (leases.open, set by every start under
	// the lease lock, which also keeps a key to one open run); closed runs
	// not yet pruned wait in closed (finish time, run), which the close
	// writes and the prune empties. start_run, no longer called by this
	// code, is rewritten the same way for processes of the version before.
	`
ALTER TABLE {s}.leases ADD COLUMN open text NOT NULL DEFAULT '';
INSERT INTO {s}.leases AS x (key, holder, generation, run, expires, open)
	SELECT key, '', 0, '', 0, id FROM {s}.runs WHERE status = 'open'
	ON CONFLICT (key) DO UPDATE SET open = EXCLUDED.open;
CREATE TABLE {s}.closed (
	finished_at bigint NOT NULL,
	run         text NOT NULL,
	PRIMARY KEY (finished_at, run)
);
INSERT INTO {s}.closed (finished_at, run)
	SELECT finished_at, id FROM {s}.runs WHERE status IN ('finished', 'failed') AND kept;
ANALYZE {s}.closed;
DROP INDEX {s}.runs_open_key;
DROP INDEX {s}.runs_closed_kept;

CREATE OR REPLACE FUNCTION {s}.start_run(p_key text, p_holder text, p_workflow text, p_new_run text, p_now bigint, p_expires bigint, p_token bigint)
RETURNS TABLE (o_generation bigint, o_id text, o_key text, o_workflow text, o_status text, o_started_at bigint,
	o_finished_at bigint, o_attempts integer, o_error text, o_report bytea)
LANGUAGE plpgsql AS $$
DECLARE
	l {s}.leases%ROWTYPE;
	r {s}.runs%ROWTYPE;
BEGIN
	INSERT INTO {s}.leases AS x (key, holder, generation, run, expires) VALUES (p_key, '', 0, '', 0)
		ON CONFLICT (key) DO NOTHING;
	SELECT * INTO l FROM {s}.leases x WHERE x.key = p_key FOR UPDATE;
	IF l.run <> '' AND l.expires > p_now THEN
		RAISE EXCEPTION 'key % is busy', p_key USING ERRCODE = 'CS001', DETAIL = l.holder, HINT = l.expires::text;
	END IF;
	UPDATE {s}.runs x SET attempts = x.attempts + 1 WHERE x.id = l.open AND x.status = 'open' RETURNING * INTO r;
	IF NOT FOUND THEN
		INSERT INTO {s}.runs AS x (id, key, workflow, status, started_at, attempts)
			VALUES (p_new_run, p_key, p_workflow, 'open', p_now, 1) RETURNING * INTO r;
	END IF;
	UPDATE {s}.leases x SET holder = p_holder, generation = l.generation + 1, run = r.id, expires = p_expires, token = p_token, open = r.id
		WHERE x.key = p_key;
	IF r.attempts = 1 THEN
		UPDATE {s}.dead_letters x SET status = 'replayed', claimed_by = r.id, updated = p_now
			WHERE x.key = p_key AND x.status = 'replay';
	END IF;
	RETURN QUERY SELECT l.generation + 1, r.id, r.key, r.workflow, r.status, r.started_at, r.finished_at, r.attempts, r.error, r.report;
END
$$;
`,
}
