package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/crmsync/crmsync"
)

// A checkpoint's rows go in as one statement per table: each statement
// takes one array per column and inserts the rows of unnest(...) in order.

// auditCols are the arrays of an audit insert; record ids travel as one
// JSON array per row, since an array of arrays must be rectangular.
const auditArrays = `unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[])
	WITH ORDINALITY AS u(time, key, run, step, kind, system, ids, idem_key, detail, n)`

const auditInsert = `INSERT INTO {s}.audit (time, key, run, step, kind, system, record_ids, idem_key, detail)
SELECT time, key, run, step, kind, system, ARRAY(SELECT jsonb_array_elements_text(ids::jsonb)), idem_key, detail`

func auditArgs(rows []crmsync.AuditEntry) []any {
	n := len(rows)
	times, keys, runs, steps, kinds, systems, ids, idems, details :=
		make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([][]byte, n)
	for i, r := range rows {
		rec := r.RecordIDs
		if rec == nil {
			rec = []string{}
		}
		b, _ := json.Marshal(rec)
		times[i], keys[i], runs[i], steps[i], kinds[i], systems[i], ids[i], idems[i], details[i] =
			ns(r.Time), r.Key, string(r.Run), r.Step, r.Kind, r.System, string(b), r.IdemKey, bytes(r.Detail)
	}
	return []any{times, keys, runs, steps, kinds, systems, ids, idems, details}
}

const ledgerArrays = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[])
	WITH ORDINALITY AS u(idem_key, run, step, system, record_id, result, at, n)`

const ledgerInsert = `INSERT INTO {s}.ledger (idem_key, run, step, system, record_id, result, at)
SELECT idem_key, run, step, system, record_id, result, at`

func ledgerArgs(rows []crmsync.LedgerEntry) []any {
	n := len(rows)
	idems, runs, steps, systems, recs, results, ats :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([][]byte, n), make([]int64, n)
	for i, e := range rows {
		idems[i], runs[i], steps[i], systems[i], recs[i], results[i], ats[i] =
			e.IdemKey, string(e.Run), e.Step, e.System, e.RecordID, bytes(e.Result), ns(e.At)
	}
	return []any{idems, runs, steps, systems, recs, results, ats}
}

const letterArrays = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::text[], $9::bigint[], $10::bigint[])
	WITH ORDINALITY AS u(key, run, step, system, record_id, payload, error, status, created, updated, n)`

const letterInsert = `INSERT INTO {s}.dead_letters (key, run, step, system, record_id, payload, error, status, created, updated)
SELECT key, run, step, system, record_id, payload, error, status, created, updated`

// letterArgs takes the new letters (ID 0) only.
func letterArgs(rows []crmsync.DeadLetter) []any {
	var keys, runs, steps, systems, recs, errs, statuses []string
	var payloads [][]byte
	var created, updated []int64
	for _, d := range rows {
		if d.ID != 0 {
			continue
		}
		keys, runs, steps, systems, recs = append(keys, d.Key), append(runs, string(d.Run)), append(steps, d.Step), append(systems, d.System), append(recs, d.RecordID)
		payloads, errs, statuses = append(payloads, bytes(d.Payload)), append(errs, d.Error), append(statuses, string(d.Status))
		created, updated = append(created, ns(d.Created)), append(updated, ns(d.Updated))
	}
	return []any{keys, runs, steps, systems, recs, payloads, errs, statuses, created, updated}
}

const cursorArrays = `unnest($1::text[], $2::text[]) AS u(name, value)`

const cursorUpsert = `INSERT INTO {s}.cursors (key, name, value) SELECT $3::text, name, value`

func cursorArgs(key string, cursors map[string]string) []any {
	names, values := make([]string, 0, len(cursors)), make([]string, 0, len(cursors))
	for k, v := range cursors {
		names, values = append(names, k), append(values, v)
	}
	return []any{names, values, key}
}

// checkpointSQL is a checkpoint's step, cursors, ledger rows, audit rows
// and new dead letters in one statement: the step is inserted only while
// the lease is current (locked FOR KEY SHARE, so that a takeover waits for
// it) and the rest only if the step was new. It returns 1 if it was.
func checkpointSQL() string {
	return `WITH st AS (
	INSERT INTO {s}.steps (run, step, result, error, attempts, done)
	SELECT $1, $2, $3, $4, $5, $6
	WHERE EXISTS (SELECT 1 FROM {s}.leases WHERE key = $7 AND generation = $8 AND run = $9 AND token = $39 FOR KEY SHARE)
	ON CONFLICT (run, step) DO NOTHING RETURNING 1
), c AS (
	` + shift(cursorUpsert+` FROM `+cursorArrays, 9) + ` WHERE EXISTS (SELECT 1 FROM st)
	ON CONFLICT (key, name) DO UPDATE SET value = excluded.value
), l AS (
	` + shift(ledgerInsert+` FROM `+ledgerArrays, 12) + ` WHERE EXISTS (SELECT 1 FROM st) ORDER BY n
	ON CONFLICT (idem_key) DO NOTHING
), a AS (
	` + shift(auditInsert+` FROM `+auditArrays, 19) + ` WHERE EXISTS (SELECT 1 FROM st) ORDER BY n
), d AS (
	` + shift(letterInsert+` FROM `+letterArrays, 28) + ` WHERE EXISTS (SELECT 1 FROM st) ORDER BY n
)
SELECT count(*) FROM st`
}

// checkpointArgs are checkpointSQL's arguments.
func checkpointArgs(l crmsync.Lease, cp crmsync.Checkpoint) []any {
	st := cp.Step
	args := make([]any, 0, 38)
	args = append(args, string(cp.Run), st.Step, bytes(st.Result), st.Error, st.Attempts, ns(st.Done), l.Key, l.Generation, string(l.Run))
	args = append(args, cursorArgs(l.Key, cp.Cursors)...)
	args = append(args, ledgerArgs(cp.Ledger)...)
	args = append(args, auditArgs(cp.Audit)...)
	args = append(args, letterArgs(cp.DeadLetters)...)
	return append(args, l.Token)
}

// shift renumbers the parameters $1… of sql to start after n, so that
// several bulk statements share one argument list.
func shift(sql string, n int) string {
	out := make([]byte, 0, len(sql)+16)
	for i := 0; i < len(sql); i++ {
		if sql[i] != '$' || i+1 >= len(sql) || sql[i+1] < '0' || sql[i+1] > '9' {
			out = append(out, sql[i])
			continue
		}
		j := i + 1
		v := 0
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			v = v*10 + int(sql[j]-'0')
			j++
		}
		out = append(out, fmt.Sprintf("$%d", v+n)...)
		i = j - 1
	}
	return string(out)
}
