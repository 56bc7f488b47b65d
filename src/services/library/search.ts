import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { EmbeddingError, type Embedder } from '../embeddings/index.ts'
import { retrievePassages, type Passage } from '../retrieval/retrieve.ts'

/** Longest search a reader may type (characters); longer gets a field message. */
export const SEARCH_MAX_LENGTH = 200
export const SEARCH_RESULTS = 10

export interface LibrarySearch {
  q: string
  /** A grade the reader chose: only that grade's books. */
  grade: number | null
  subject: string | null
}

/**
 * The library's search box. A chosen grade filters; otherwise a student's own grade ranks first.
 * When the embeddings endpoint is down the keyword and trigram legs still answer, so the
 * library keeps working without the network.
 */
export async function searchLibrary(db: Kysely<DB>, embedder: Embedder, search: LibrarySearch, ownGrade: number | null): Promise<Passage[]> {
  const options = {
    query: search.q,
    subject: search.subject,
    grade: search.grade ?? ownGrade,
    gradeMode: search.grade !== null ? ('only' as const) : ('prefer' as const),
    limit: SEARCH_RESULTS,
  }
  try {
    return await retrievePassages(db, options, embedder)
  } catch (err) {
    if (!(err instanceof EmbeddingError)) throw err
    return retrievePassages(db, { ...options, legs: ['keyword', 'trigram'] }, embedder)
  }
}
