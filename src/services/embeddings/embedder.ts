/**
 * Turns texts into unit-length vectors. One active model per deployment: chunks record the
 * `model` that embedded them, and a query must be embedded by the same one.
 */
export interface Embedder {
  readonly model: string
  readonly dimensions: number
  /** One vector per text, same order, each of length `dimensions` and L2 norm 1. */
  embed(texts: string[]): Promise<number[][]>
}

/** A provider failed in a way retrying will not fix (or retries ran out). Never carries the API key. */
export class EmbeddingError extends Error {
  readonly status: number | null
  constructor(message: string, status: number | null = null) {
    super(message)
    this.name = 'EmbeddingError'
    this.status = status
  }
}

/** Scales a vector to length 1 in place; an all-zero vector is returned unchanged. */
export function l2normalize(v: number[]): number[] {
  let sum = 0
  for (const x of v) sum += x * x
  if (sum === 0) return v
  const inv = 1 / Math.sqrt(sum)
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * inv
  return v
}
