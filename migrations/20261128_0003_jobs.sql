-- Durable background jobs (issue 3: PDF ingestion, re-indexing). See src/services/jobs/queue.ts.
--
-- A runner claims a job with UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED), so several
-- app instances never run the same job; the claim is a lease (locked_until) that the runner
-- renews while it works. A job whose lease expired (its process died) is claimed again and the
-- handler resumes from what it had saved (rows it wrote, or `checkpoint`).

CREATE TABLE jobs (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
  -- What a progress page shows: { "stage": "embedding", "done": 120, "total": 480 }.
  progress jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Where the handler resumes after a crash; its own format.
  checkpoint jsonb,
  -- What a finished job produced (e.g. { "textbookId": 3, "chunks": 41 }).
  result jsonb,
  -- Claims so far, including the running one.
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
  -- A queued job waits until then (retry backoff).
  run_after timestamptz NOT NULL DEFAULT now(),
  locked_by text,
  locked_until timestamptz,
  -- Why the last attempt failed: an i18n key (ingest.errors.*) or, for unexpected errors, a short message.
  error text CHECK (length(error) <= 2000),
  -- Values for the i18n key's {{placeholders}}.
  error_params jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);

-- What claimNext scans: queued jobs by due time, running jobs by lease expiry.
CREATE INDEX jobs_queued_idx ON jobs (run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_kind_created_idx ON jobs (kind, created_at DESC);
