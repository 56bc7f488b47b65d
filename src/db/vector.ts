/**
 * pgvector helpers. Vectors travel as pgvector's text form ("[0.1,-0.2,…]") cast to `vector`
 * in SQL, which works the same on PGlite and on a Postgres server without a type parser.
 */

/** The dimensions the chunks table has a column (and an HNSW index) for. */
export const VECTOR_COLUMNS = { 768: 'embedding', 1536: 'embedding_1536' } as const
export type VectorDimensions = keyof typeof VECTOR_COLUMNS
export type VectorColumn = (typeof VECTOR_COLUMNS)[VectorDimensions]

export function isSupportedDimensions(n: number): n is VectorDimensions {
  return n === 768 || n === 1536
}

export function vectorColumn(dimensions: number): VectorColumn {
  if (!isSupportedDimensions(dimensions)) {
    throw new Error(`embeddings must have 768 or 1536 dimensions, got ${dimensions}`)
  }
  return VECTOR_COLUMNS[dimensions]
}

/** pgvector stores float4; 7 significant digits keep every bit that survives the cast. */
export function toVectorLiteral(v: readonly number[]): string {
  let out = '['
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!
    if (!Number.isFinite(x)) throw new Error(`vector component ${i} is not a finite number`)
    if (i > 0) out += ','
    out += x === 0 ? '0' : String(Number(x.toPrecision(7)))
  }
  return out + ']'
}

export function parseVectorLiteral(text: string): number[] {
  const inner = text.trim().replace(/^\[/, '').replace(/\]$/, '')
  return inner === '' ? [] : inner.split(',').map(Number)
}
