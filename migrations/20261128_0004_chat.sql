-- Conversations with the tutor, their messages, the answer cache, daily usage counters and
-- learning events (issue 4). See docs/decisions/011-chat-answer-loop.md.

-- Per-school override of the chat limits (null: the defaults from config).
ALTER TABLE schools
  ADD COLUMN chat_per_minute integer CHECK (chat_per_minute BETWEEN 1 AND 10000),
  ADD COLUMN chat_per_day integer CHECK (chat_per_day BETWEEN 1 AND 100000);

CREATE TABLE conversations (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  school_id integer NOT NULL REFERENCES schools(id),
  subject text NOT NULL REFERENCES subjects(code),
  grade smallint NOT NULL CHECK (grade BETWEEN 1 AND 12),
  -- Optional context, e.g. from a library page's "ask about this section".
  textbook_id integer REFERENCES textbooks(id) ON DELETE SET NULL,
  section_path text CHECK (length(section_path) <= 50),
  -- From the first question.
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- The student's list, newest first.
CREATE INDEX conversations_user_updated_idx ON conversations (user_id, updated_at DESC, id DESC);

-- A question is a 'user' row; its answer is the 'assistant' row stored with it (same
-- statement), which carries the answer's status, retry state and usage. user_id is copied from
-- the conversation so quotas are counted from this table alone.
CREATE TABLE messages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id integer NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('user', 'assistant')),
  content text NOT NULL DEFAULT '' CHECK (length(content) <= 100000),
  -- user rows: 'done'. assistant rows: queued (waiting for a worker, see run_after) →
  -- answering (someone holds the lease) → done | failed.
  status text NOT NULL DEFAULT 'done' CHECK (status IN ('queued', 'answering', 'done', 'failed')),
  -- assistant rows: the question it answers.
  reply_to bigint REFERENCES messages(id) ON DELETE CASCADE,
  -- 'offline' (textbook passages), 'llm', 'cache'.
  kind text CHECK (kind IN ('offline', 'llm', 'cache')),
  -- The "more detail" action: asked again with a bigger max_tokens.
  detail boolean NOT NULL DEFAULT false,
  attempts smallint NOT NULL DEFAULT 0,
  run_after timestamptz,
  lease_until timestamptz,
  -- The key of the answer cache when the question may be cached (first question, nothing personal).
  cache_key text,
  provider text,
  model text,
  prompt_tokens integer,
  completion_tokens integer,
  cost_usd numeric(12, 8),
  latency_ms integer,
  first_token_ms integer,
  cached boolean NOT NULL DEFAULT false,
  -- [{ "n": 1, "textbookId": 3, "title": "Биологи 7", "section": "2.1", "sectionTitle": "…", "pageStart": 14, "pageEnd": 15 }]
  citations jsonb NOT NULL DEFAULT '[]'::jsonb,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  answered_at timestamptz
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, id);
-- Quotas: a student's questions in the last minute / today.
CREATE INDEX messages_user_questions_idx ON messages (user_id, created_at) WHERE role = 'user';
-- The worker: answers waiting for a retry, or whose lease ran out (the instance died).
CREATE INDEX messages_pending_idx ON messages (run_after) WHERE status IN ('queued', 'answering');

-- Answers to first questions, shared between students of the same grade/subject/textbook.
-- An entry is created when a question is answered; its answer is stored (and served) once the
-- same question has been answered twice, so the third asker gets it instantly.
CREATE TABLE answer_cache (
  key text PRIMARY KEY,
  answer text,
  citations jsonb NOT NULL DEFAULT '[]'::jsonb,
  provider text,
  model text,
  seen_count integer NOT NULL DEFAULT 1,
  hit_count integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX answer_cache_expires_idx ON answer_cache (expires_at);

-- Usage and cost per school and day (Asia/Ulaanbaatar), written with each answer.
CREATE TABLE chat_usage_daily (
  school_id integer NOT NULL REFERENCES schools(id),
  day date NOT NULL,
  answers integer NOT NULL DEFAULT 0,
  cached integer NOT NULL DEFAULT 0,
  prompt_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0,
  cost_usd numeric(14, 8) NOT NULL DEFAULT 0,
  PRIMARY KEY (school_id, day)
);

-- What students do, for the learning model: written in batches, never one write per event.
CREATE TABLE learning_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  school_id integer REFERENCES schools(id),
  kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 40),
  subject text,
  grade smallint,
  -- e.g. the textbook section the question was about: "3:2.1".
  topic text CHECK (length(topic) <= 200),
  data jsonb NOT NULL DEFAULT '{}'::jsonb,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX learning_events_user_idx ON learning_events (user_id, at);
