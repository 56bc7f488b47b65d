-- Foundation: extensions, schools, people, classes, sessions.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE schools (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  code integer NOT NULL UNIQUE CHECK (code > 0),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  disabled_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE classes (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  school_id integer NOT NULL REFERENCES schools(id),
  teacher_id integer,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  grade smallint NOT NULL CHECK (grade BETWEEN 1 AND 12),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX classes_school_idx ON classes (school_id);
CREATE INDEX classes_teacher_idx ON classes (teacher_id);

CREATE TABLE users (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  school_id integer REFERENCES schools(id),
  role text NOT NULL CHECK (role IN ('platform_admin', 'school_admin', 'teacher', 'student')),
  username text NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
  display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
  password_hash text NOT NULL,
  grade smallint CHECK (grade BETWEEN 1 AND 12),
  class_id integer REFERENCES classes(id),
  disabled_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((role = 'platform_admin') = (school_id IS NULL))
);
CREATE UNIQUE INDEX users_school_username_idx ON users (school_id, lower(username)) WHERE school_id IS NOT NULL;
CREATE UNIQUE INDEX users_platform_username_idx ON users (lower(username)) WHERE school_id IS NULL;
CREATE INDEX users_class_idx ON users (class_id);

ALTER TABLE classes ADD CONSTRAINT classes_teacher_fk FOREIGN KEY (teacher_id) REFERENCES users(id);

CREATE TABLE sessions (
  id text PRIMARY KEY,
  user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  idle_timeout boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Failed logins, for throttling per account and per IP; old rows are pruned as they age out.
CREATE TABLE login_failures (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_at_idx ON login_failures (key, at);
