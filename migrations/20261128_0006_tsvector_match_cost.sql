-- Retrieval's text legs read candidate chunks from the GIN index on chunks.tsv, one probe per rare
-- query word (`tsv @@ q`, docs/decisions/010). The planner takes `@@` (the function ts_match_vq)
-- to cost as little as `=`, so on a small library — the sample books' 63 chunks — it scans the
-- whole table once per probe instead, matching every chunk's tsvector (~7 µs each in PGlite,
-- ~20 µs where the tsvector is compressed or toasted): 4–9 ms of the chat's search statement
-- where the index takes ~0.2 ms. Reading and matching a tsvector costs about as much as a thousand
-- simple operators (with statistics, 100 still left the keyword leg's OR of many forms to a scan);
-- saying so changes which plan is chosen, never a result. As for similarity_op
-- (0005), left as it was, with a notice, where the database user may not alter a built-in
-- function (a managed Postgres): larger libraries use the index anyway. A dump and restore of a
-- Postgres server does not keep it (pg_dump leaves built-in functions out).
DO $$
BEGIN
  ALTER FUNCTION ts_match_vq(tsvector, tsquery) COST 1000;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'ts_match_vq keeps its cost estimate: %', SQLERRM;
END
$$;
-- The plan choice above needs table statistics, which a library imported before this migration
-- may never have had (PGlite runs no autovacuum; markReady now analyzes after each import).
ANALYZE chunks;
ANALYZE search_words;
