-- Textbooks, their page texts and searchable chunks (issue 3).
-- See docs/decisions/010-mongolian-retrieval.md for the choices behind the chunk columns.

-- A fixed list of school subjects; codes are what URLs, the CLI and the import format use.
CREATE TABLE subjects (
  code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z_]{1,31}$'),
  name_mn text NOT NULL,
  name_en text NOT NULL,
  sort smallint NOT NULL
);

INSERT INTO subjects (code, name_mn, name_en, sort) VALUES
  ('mongolian',       'Монгол хэл',          'Mongolian language',  1),
  ('literature',      'Уран зохиол',         'Literature',          2),
  ('mongol_script',   'Монгол бичиг',        'Mongolian script',    3),
  ('math',            'Математик',           'Mathematics',         4),
  ('physics',         'Физик',               'Physics',             5),
  ('chemistry',       'Хими',                'Chemistry',           6),
  ('biology',         'Биологи',             'Biology',             7),
  ('geography',       'Газарзүй',            'Geography',           8),
  ('history',         'Түүх',                'History',             9),
  ('social',          'Нийгмийн ухаан',      'Social studies',     10),
  ('civics',          'Иргэний боловсрол',   'Civic education',    11),
  ('human_nature',    'Хүн ба байгаль',      'Human and nature',   12),
  ('human_society',   'Хүн ба нийгэм',       'Human and society',  13),
  ('informatics',     'Мэдээлэл зүй',        'Informatics',        14),
  ('english',         'Англи хэл',           'English',            15),
  ('russian',         'Орос хэл',            'Russian',            16),
  ('technology',      'Технологи',           'Technology',         17),
  ('art',             'Дүрслэх урлаг',       'Art',                18),
  ('music',           'Хөгжим',              'Music',              19),
  ('health',          'Эрүүл мэнд',          'Health',             20),
  ('physical_education', 'Биеийн тамир',     'Physical education', 21);

-- One row per imported version of a book. A re-import is a new row with replaces_id set; it
-- becomes 'ready' and the old row 'replaced' in one transaction, so search never sees a gap.
CREATE TABLE textbooks (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subject text NOT NULL REFERENCES subjects(code),
  grade smallint NOT NULL CHECK (grade BETWEEN 1 AND 12),
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
  year smallint CHECK (year BETWEEN 1950 AND 2100),
  kind text NOT NULL DEFAULT 'required' CHECK (kind IN ('required', 'optional')),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'ready', 'failed', 'replaced')),
  -- What went wrong, as an i18n key or a short message; null unless status = 'failed'.
  error text,
  -- [{ "path": "2.1", "title": "Фотосинтез", "level": 2, "page": 14, "pdfPage": 16 }, …]
  toc jsonb NOT NULL DEFAULT '[]'::jsonb,
  page_count integer NOT NULL DEFAULT 0 CHECK (page_count >= 0),
  -- Relative to DATA_DIR; null for books imported as pre-computed chunks.
  source_path text,
  source_sha256 text,
  version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  replaces_id integer REFERENCES textbooks(id) ON DELETE SET NULL,
  embedding_model text,
  -- Set when the book becomes ready; their sum over ready books is the N of IDF.
  chunk_count integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  ready_at timestamptz
);
CREATE INDEX textbooks_grade_subject_idx ON textbooks (grade, subject);
CREATE INDEX textbooks_status_idx ON textbooks (status);

-- Extracted text of every PDF page. pdf_page is the 1-based index in the file; label is what is
-- printed on the page ("45", "xii") and number its numeric value, both null when nothing is printed.
CREATE TABLE textbook_pages (
  textbook_id integer NOT NULL REFERENCES textbooks(id) ON DELETE CASCADE,
  pdf_page integer NOT NULL CHECK (pdf_page >= 1),
  label text CHECK (length(label) <= 20),
  number integer,
  text text NOT NULL,
  PRIMARY KEY (textbook_id, pdf_page)
);

-- Passages that retrieval returns. A chunk never crosses a section. page_start/page_end are the
-- textbook's printed page numbers (the PDF page when none is printed): what a citation shows.
-- content_norm is section title + content after normalizeText() (src/services/retrieval/
-- normalize.ts): lower case, ё→е, punctuation removed. Its tsvector ('simple': no stemming, no
-- stopwords — no Postgres config knows Mongolian) is what the keyword and trigram legs match.
-- Embeddings: one active model per deployment. 768 dims (the local embedder, and remote models
-- asked for dimensions=768) go to `embedding`; 1536 dims go to `embedding_1536`. Both stay under
-- the 2000-dimension limit of pgvector's HNSW index.
CREATE TABLE chunks (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  textbook_id integer NOT NULL REFERENCES textbooks(id) ON DELETE CASCADE,
  ord integer NOT NULL CHECK (ord >= 0),
  section_path text NOT NULL DEFAULT '' CHECK (length(section_path) <= 50),
  section_title text NOT NULL DEFAULT '' CHECK (length(section_title) <= 300),
  page_start integer NOT NULL,
  page_end integer NOT NULL,
  pdf_page_start integer NOT NULL CHECK (pdf_page_start >= 1),
  pdf_page_end integer NOT NULL,
  content text NOT NULL CHECK (length(content) BETWEEN 1 AND 20000),
  content_norm text NOT NULL,
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content_norm)) STORED,
  embedding vector(768),
  embedding_1536 vector(1536),
  embedding_model text,
  CHECK (page_end >= page_start),
  CHECK (pdf_page_end >= pdf_page_start)
);
CREATE UNIQUE INDEX chunks_textbook_ord_idx ON chunks (textbook_id, ord);
CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_embedding_1536_idx ON chunks USING hnsw (embedding_1536 vector_cosine_ops);

-- The vocabulary of the ready textbooks: every distinct word of their chunks and in how many
-- chunks it occurs. Retrieval expands query words through it — to inflected forms
-- (фотосинтез → фотосинтезийн, фотосинтезэд), to trigram-similar words (pg_trgm on these short
-- words instead of on whole chunk texts, which costs seconds per query at 20k chunks), and to
-- the Cyrillic spelling of a word typed in Latin letters — and weighs them by IDF.
-- Maintained by markReady/deleteTextbook (src/services/textbooks/store.ts). COLLATE "C" makes
-- prefix lookups plain btree range scans.
CREATE TABLE search_words (
  word text COLLATE "C" PRIMARY KEY,
  chunks integer NOT NULL CHECK (chunks >= 0)
);
CREATE INDEX search_words_trgm_idx ON search_words USING gin (word gin_trgm_ops);
