import { normalizeText, stem, STOPWORDS } from '../retrieval/normalize.ts'
import { l2normalize, type Embedder } from './embedder.ts'

/**
 * The built-in embedder: offline, deterministic, ~0.1 ms per passage. A sparse bag of features
 * of the normalized text — whole words, their stems, and character 3–5-grams of each word with
 * boundary marks (so "фотосинтезийн" shares most of its features with "фотосинтез") — folded
 * into 768 dimensions by signed feature hashing and scaled to unit length. Cosine similarity
 * between two such vectors approximates weighted n-gram overlap; it knows no synonyms, which is
 * why retrieval fuses it with the keyword and trigram legs. Changing anything here changes
 * `model`, and stored chunks then need a re-index.
 */
export const LOCAL_MODEL = 'bagsh-local-ngram-v1'
export const LOCAL_DIMENSIONS = 768

const WORD_WEIGHT = 1
const STEM_WEIGHT = 1
// Spread over all n-grams of a word, so a long word does not outweigh a short one. The n-grams
// carry most of the weight: they are what makes inflected forms of a word similar
// (bench/retrieval-quality.ts: vector-only hit@1 0.84 with 2.5, 0.88 with 8).
const NGRAM_BUDGET = 8
const STOPWORD_FACTOR = 0.1

export function createLocalEmbedder(): Embedder {
  return {
    model: LOCAL_MODEL,
    dimensions: LOCAL_DIMENSIONS,
    async embed(texts: string[]) {
      return texts.map(embedLocal)
    },
  }
}

/** FNV-1a over UTF-16 code units. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** murmur3's finalizer: decorrelates the sign bit from the bucket. */
function mix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export function embedLocal(text: string): number[] {
  const counts = new Map<string, number>()
  const add = (feature: string, weight: number) => counts.set(feature, (counts.get(feature) ?? 0) + weight)
  for (const word of normalizeText(text).split(' ')) {
    if (!word) continue
    const factor = STOPWORDS.has(word) ? STOPWORD_FACTOR : 1
    add('w' + word, WORD_WEIGHT * factor)
    const s = stem(word)
    if (s !== word) add('s' + s, STEM_WEIGHT * factor)
    const marked = '<' + word + '>'
    const grams: string[] = []
    for (let n = 3; n <= 5; n++) {
      for (let i = 0; i + n <= marked.length; i++) grams.push(marked.slice(i, i + n))
    }
    const g = (NGRAM_BUDGET * factor) / Math.sqrt(grams.length || 1)
    for (const gram of grams) add('g' + gram, g)
  }
  const v = new Array<number>(LOCAL_DIMENSIONS).fill(0)
  for (const [feature, weight] of counts) {
    const h = fnv1a(feature)
    // Sublinear term frequency: a word repeated ten times is not ten times as relevant.
    const w = weight >= 1 ? 1 + Math.log(weight) : weight
    v[h % LOCAL_DIMENSIONS]! += mix(h) & 1 ? w : -w
  }
  if (counts.size === 0) v[0] = 1 // nothing to embed: a valid unit vector, not NaN cosines
  return l2normalize(v)
}
