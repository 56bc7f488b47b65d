-- Retrieval looks up similar words with pg_trgm's `%` on search_words (docs/decisions/010).
-- The planner takes `%` (the function similarity_op) to cost as little as `=`, so on a small
-- vocabulary — the sample books' ~2,600 words — it scans the table and computes a similarity for
-- every word (~7 µs each in PGlite: ~18 ms of every search) instead of using search_words_trgm_idx
-- (~1 ms). A trigram similarity costs about as much as a hundred simple operators; saying so
-- changes which plan is chosen, never a result. Left as it was, with a notice, where the
-- database user does not own the extension's functions (a managed Postgres may have created
-- pg_trgm as another role): larger vocabularies use the index anyway.
DO $$
BEGIN
  ALTER FUNCTION similarity_op(text, text) COST 100;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'similarity_op keeps its cost estimate: %', SQLERRM;
END
$$;
