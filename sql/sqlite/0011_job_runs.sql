-- Runs of scheduled jobs, shared by every daemon on the store. A scheduled
-- run is claimed once per job and tick (the schedule's time it is for) by
-- the unique index, so one daemon runs it; a run on request has no tick.
-- /v1/admin/jobs reads each job's newest finished run from here.
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT NOT NULL,
    tick        TEXT,
    daemon      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER,
    ok          INTEGER,
    outcome     TEXT
);
CREATE UNIQUE INDEX job_runs_tick ON job_runs (job, tick);
CREATE INDEX job_runs_started ON job_runs (job, started_at);
