/**
 * Mongolian text normalization, Latin→Cyrillic transliteration and a light stemmer.
 * The same normalizeText() runs on chunk text at insert time (chunks.content_norm) and on
 * queries, so both sides always agree. See docs/decisions/010-mongolian-retrieval.md.
 */

// Lookalike Latin letters inside a Cyrillic word (typed on the wrong layout or left by OCR).
const LOOKALIKES: Record<string, string> = {
  A: 'А', B: 'В', C: 'С', E: 'Е', H: 'Н', K: 'К', M: 'М', O: 'О', P: 'Р', T: 'Т', X: 'Х', Y: 'У',
  a: 'а', c: 'с', e: 'е', o: 'о', p: 'р', x: 'х', y: 'у',
}
const CYRILLIC = /[\u0400-\u04ff]/
const LATIN = /[a-z]/i

/**
 * Lower case, ё→е, ө and ү kept as they are (the old-font stand-ins ѳ/ѵ become ө/ү), Latin
 * lookalikes inside Cyrillic words made Cyrillic, soft hyphens and zero-width characters
 * dropped, everything that is not a letter or a digit turned into a space, spaces collapsed.
 */
export function normalizeText(text: string): string {
  return text
    .normalize('NFKC')
    .replace(/[\u00ad\u200b-\u200d\u2060\ufeff]/g, '')
    .replace(/[\p{L}\p{M}]+/gu, (word) =>
      CYRILLIC.test(word) && LATIN.test(word) ? word.replace(/[A-Za-z]/g, (ch) => LOOKALIKES[ch] ?? ch) : word,
    )
    .toLowerCase()
    .replace(/ё/g, 'е')
    .replace(/ѳ/g, 'ө')
    .replace(/ѵ/g, 'ү')
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim()
}

/** Words that say nothing about the topic of a question: question particles, copulas, pronouns. */
export const STOPWORDS: ReadonlySet<string> = new Set(
  `нь юу юуг юун юуны юунд юунаас юугаар вэ бэ уу үү гэж гэдэг гэдгийг гэсэн гэвэл гэх гэхэд гэнэ
  ба болон бол юм юмаа байна байдаг байх байсан байгаа байв болно болдог энэ тэр эдгээр тэдгээр
  үүнд түүнд үүнийг түүнийг ямар ямраар яагаад яаж хэрхэн хэд хэдэн хэдий хэн хэнийг хэний хэнд
  хэнээс хэнтэй хаана хаанаас хаашаа хэзээ аль алийг ч л даа дээ доо дөө буюу эсвэл мэт бас ийм
  тийм учир учраас тул харин гэхдээ тухай талаар тайлбарла тайлбарлана тайлбарлаж хэл хэлэх
  хэлдэг хэлнэ хэлж нэрлэдэг нэрлэнэ өгнө өгөөч вэй би чи та бид тэд миний таны нэгэн хийгээд мөн
  ингэж тэгж тэгээд ингээд`.split(/\s+/).filter(Boolean),
)

// --- Latin → Cyrillic -------------------------------------------------------------------------

/**
 * A transliterated word is a list of slots: fixed Cyrillic text, or an ambiguous letter class
 * whose choice is shared by the whole word (vowel harmony: one word does not mix о and ө).
 */
type Slot = string | { cls: AmbiguousClass }
type AmbiguousClass = 'o' | 'u' | 'e' | 'ii' | 'iEnd' | 'y' | 'v'

/** Options per class and kind of word, likeliest first. */
const CLASS_OPTIONS: Record<AmbiguousClass, { back: string[]; front: string[]; loan: string[] }> = {
  o: { back: ['о', 'ө'], front: ['ө', 'о'], loan: ['о', 'ө'] },
  u: { back: ['у', 'ү'], front: ['ү', 'у'], loan: ['у', 'ү'] },
  e: { back: ['э', 'е'], front: ['э', 'е'], loan: ['е', 'э'] },
  ii: { back: ['ы', 'ий'], front: ['ий', 'ы'], loan: ['ий', 'ы'] },
  iEnd: { back: ['и', 'ь'], front: ['и', 'ь'], loan: ['и', 'ь'] },
  y: { back: ['ы', 'ү', 'й'], front: ['ү', 'ы', 'й'], loan: ['ы', 'й', 'ү'] },
  v: { back: ['в', 'ү'], front: ['в', 'ү'], loan: ['в', 'ү'] },
}

const DIGRAPHS: [string, string][] = [
  ['shch', 'щ'], ['sh', 'ш'], ['ch', 'ч'], ['ts', 'ц'], ['kh', 'х'], ['zh', 'ж'],
  ['ya', 'я'], ['yu', 'ю'], ['yo', 'ё'], ['ye', 'е'],
]
const SINGLE: Record<string, Slot> = {
  a: 'а', b: 'б', c: 'ц', d: 'д', f: 'ф', g: 'г', h: 'х', i: 'и', j: 'ж', k: 'к', l: 'л', m: 'м',
  n: 'н', p: 'п', q: 'ө', r: 'р', s: 'с', t: 'т', w: 'в', x: 'х', z: 'з', 'ö': 'ө', 'ü': 'ү',
  o: { cls: 'o' }, u: { cls: 'u' }, e: { cls: 'e' }, v: { cls: 'v' },
}
const VOWELS = 'aeiouöüy'
// Whole words students type that the letter rules get wrong.
const WORDS: Record<string, string> = { yu: 'юу', yuu: 'юу', yum: 'юм', ve: 'вэ', be: 'бэ', uu: 'уу' }

export function isLatinWord(word: string): boolean {
  return /^[a-zöü]+$/.test(word)
}

function slotsOf(word: string): Slot[] {
  const slots: Slot[] = []
  let i = 0
  while (i < word.length) {
    const rest = word.slice(i)
    const di = DIGRAPHS.find(([lat]) => rest.startsWith(lat))
    if (di) {
      slots.push(di[1])
      i += di[0].length
      continue
    }
    const ch = word[i]!
    const prev = i > 0 ? word[i - 1]! : ''
    const next = word[i + 1] ?? ''
    if (ch === 'i') {
      if (next === 'i') {
        // "ii": ий after a front stem, ы after a back one ("omiin" → омын, "huuliin" → хуулийн).
        slots.push(prev && VOWELS.includes(prev) ? 'ий' : { cls: 'ii' })
        i += 2
        continue
      }
      if (prev && 'aeou'.includes(prev) && (!next || !VOWELS.includes(next))) {
        slots.push('й') // diphthong: "ai" → ай, "oi" → ой
      } else if (!next && prev && !VOWELS.includes(prev)) {
        slots.push({ cls: 'iEnd' }) // "huuli" → хууль or хуули
      } else {
        slots.push('и')
      }
      i++
      continue
    }
    if (ch === 'y') {
      slots.push(prev && 'aeoui'.includes(prev) ? 'й' : { cls: 'y' })
      i++
      continue
    }
    slots.push(SINGLE[ch] ?? '')
    i++
  }
  return slots
}

/**
 * Back word (а, о, у), front word (э, ө, ү), or a loanword, guessed from the Latin letters.
 * Native words follow vowel harmony; loanwords (ф, к, п are rare outside them) keep о, у and
 * write е: "fotosintez" → фотосинтез, "gerel" → гэрэл.
 */
function harmonyOf(word: string): 'back' | 'front' | 'loan' {
  if (/[fkp]/.test(word.replace(/kh/g, ''))) return 'loan'
  const w = word.replace(/y[aeou]/g, '')
  if (/[a]/.test(w)) return 'back'
  if (/[eöü]/.test(w)) return 'front'
  return 'back'
}

/**
 * Cyrillic spellings of a word typed in Latin letters, the most likely first (at most `max`).
 * Ambiguous letters (o → о/ө, u → у/ү, e → э/е, ii → ы/ий, final i → и/ь, y → ы/ү/й) take
 * one choice per word; the first spelling follows vowel harmony.
 */
export function transliterateWord(word: string, max = 16): string[] {
  const w = word.toLowerCase()
  if (WORDS[w]) return [WORDS[w]!]
  const slots = slotsOf(w)
  const harmony = harmonyOf(w)
  const classes = [...new Set(slots.filter((s): s is { cls: AmbiguousClass } => typeof s !== 'string').map((s) => s.cls))]
  // Enumerate choice vectors, fewest departures from the preferred choice first.
  let combos: { choice: Record<string, string>; cost: number }[] = [{ choice: {}, cost: 0 }]
  for (const cls of classes) {
    const options = CLASS_OPTIONS[cls][harmony]
    const nextCombos: typeof combos = []
    for (const c of combos) options.forEach((opt, k) => nextCombos.push({ choice: { ...c.choice, [cls]: opt }, cost: c.cost + k }))
    combos = nextCombos
  }
  combos.sort((a, b) => a.cost - b.cost)
  const out: string[] = []
  for (const c of combos) {
    const text = slots.map((s) => (typeof s === 'string' ? s : c.choice[s.cls]!)).join('').replace(/ё/g, 'е')
    if (text && !out.includes(text)) out.push(text)
    if (out.length >= max) break
  }
  return out
}

/** The most likely Cyrillic reading of a whole text; Cyrillic words pass through. */
export function transliterate(text: string): string {
  return normalizeText(text)
    .split(' ')
    .map((w) => (isLatinWord(w) ? transliterateWord(w, 1)[0] ?? w : w))
    .join(' ')
}

// --- Stemming-lite ------------------------------------------------------------------------------

// Case, plural, possessive and a few verb endings, longest first. Used only to build prefix
// queries for the keyword leg (фотосинтезийн → фотосинтез:*), so stripping a little too much
// costs some precision, never a miss.
const SUFFIXES = `гийн гаас гээс гоос гөөс гаар гээр гоор гөөр наас нээс ноос нөөс наар нээр ноор нөөр
  нууд нүүд чууд чүүд ийн ийг аас ээс оос өөс иас иос аар ээр оор өөр иар иор тай тэй той
  руу рүү луу лүү ууд үүд даг дэг дог дөг сан сэн сон сөн аад ээд оод өөд вал вэл вол вөл
  гаа гээ гоо гөө ын ны ний ыг ад эд од өд нд ид аа ээ оо өө на нэ но нө д т х ж ч г н`
  .split(/\s+/)
  .filter(Boolean)
  .sort((a, b) => b.length - a.length)

// Endings that may follow a stem in the corpus vocabulary: the suffixes above plus the bare
// vowels and soft sign that close a stem (хуул → хууль, хуули).
const TAIL_PARTS = new Set([...SUFFIXES, 'ь', 'и', 'ы', 'ий', 'ж', 'лт', 'лтын', 'лтыг'])

/**
 * Whether `rest` (what follows a stem in a word) is a chain of up to three inflectional
 * endings: "ийн", "ууд"+"ын", "" — but not "илтөрөгч" (хүч + илтөрөгч is another word).
 */
export function isInflectionTail(rest: string, depth = 3): boolean {
  if (rest === '') return true
  if (depth === 0) return false
  for (let n = Math.min(5, rest.length); n >= 1; n--) {
    if (TAIL_PARTS.has(rest.slice(-n)) && isInflectionTail(rest.slice(0, -n), depth - 1)) return true
  }
  return false
}

/** A corpus word that is `stem` with an ending: long stems take any short ending, short ones only inflections. */
export function isInflectedForm(stem: string, word: string): boolean {
  if (!word.startsWith(stem)) return false
  const rest = word.slice(stem.length)
  return stem.length >= 6 ? rest.length <= 8 : isInflectionTail(rest)
}

const CYR_VOWELS = 'аэиоуөүыеяюй'
const MIN_STEM = 3

/** Strips up to two inflectional endings, keeping at least three letters (four after the second). */
export function stem(word: string): string {
  let w = word
  for (let round = 0; round < 2; round++) {
    const min = MIN_STEM + round
    const suffix = SUFFIXES.find((s) => w.endsWith(s) && w.length - s.length >= min)
    if (!suffix) break
    w = w.slice(0, -suffix.length)
  }
  return w
}

/**
 * Prefixes that should find a word's dictionary form: its stem, plus the stem with the fleeting
 * vowel put back when inflection dropped it (гэрлийн → гэрл → гэрэл, ургамлын → ургамал).
 */
export function stemPrefixes(word: string): string[] {
  const s = stem(word)
  const out = [s]
  const n = s.length
  if (s !== word && n >= 4 && !CYR_VOWELS.includes(s[n - 1]!) && !CYR_VOWELS.includes(s[n - 2]!)) {
    const lastVowel = [...s].reverse().find((ch) => 'аэоуөүи'.includes(ch))
    for (const v of new Set([lastVowel ?? 'а', 'и'])) out.push(s.slice(0, -1) + v + s[n - 1])
  }
  return out.filter((p) => p.length >= MIN_STEM)
}

// --- Queries -------------------------------------------------------------------------------------

export interface QueryToken {
  /** The normalized token as typed. */
  text: string
  latin: boolean
  /** Cyrillic spellings to try, most likely first ([text] for a Cyrillic word). */
  variants: string[]
}

export interface AnalyzedQuery {
  normalized: string
  /** Content tokens (stopwords removed), at most 12. */
  tokens: QueryToken[]
}

/** Splits a query into content tokens; Latin-script words get their Cyrillic candidates. */
export function analyzeQuery(query: string): AnalyzedQuery {
  const normalized = normalizeText(query.slice(0, 2000))
  const tokens: QueryToken[] = []
  const seen = new Set<string>()
  for (const text of normalized.split(' ')) {
    // Nothing longer is a word (the longest Mongolian words have about 30 letters).
    if (!text || text.length > 40 || seen.has(text)) continue
    seen.add(text)
    const latin = isLatinWord(text)
    const variants = latin ? transliterateWord(text) : [text]
    // A Latin word counts as a stopword when its likeliest reading is one ("gej yu ve").
    if (STOPWORDS.has(variants[0]!) || STOPWORDS.has(text)) continue
    tokens.push({ text, latin, variants })
    if (tokens.length >= 12) break
  }
  return { normalized, tokens }
}
