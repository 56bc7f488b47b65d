import { readFileSync } from 'node:fs'

/**
 * KaTeX's HTML output positions glyphs with inline `style` attributes (heights, vertical-align,
 * top offsets, margins). Our CSP (`style-src 'self'`, no 'unsafe-inline') blocks those, so every
 * declaration is turned into a class from a finite set served in a stylesheet from our origin
 * (docs/decisions/007-math-rendering-without-inline-styles.md).
 *
 * Lengths are rounded to 0.01em and looked up in a vocabulary (katex-vocab.json, built by
 * scripts/build-katex-vocab.ts): every length KaTeX writes for a corpus of school maths, plus a
 * coarse backbone per property (see the bands below). A length missing from it snaps to the
 * nearest one present, so the error is bounded by half a backbone step. Colours snap to a
 * small palette.
 */

/** Backbone steps: `[upTo, step]` in em, by distance from 0; every multiple of `step` up to `upTo` is a class. */
export type Bands = Array<[number, number]>

export interface LengthProperty {
  /** Short code used in the class name: `k` + code + value, e.g. `kh123` = height 1.23em, `ktn3` = top -0.03em. */
  code: string
  /** The range the property can meaningfully take (em); lengths beyond are clamped. */
  min: number
  max: number
  bands: Bands
}

/** Positions and sizes of boxes: ≤ 0.05em (≈ 1px) off up to 4em, ≤ 0.125em up to 12em, ≤ 0.5em beyond. */
const BOX: Bands = [[4, 0.1], [12, 0.25], [40, 1]]
/** Rule thicknesses: a fraction line must stay a hairline. */
const RULE: Bands = [[0.2, 0.01], [2, 0.1], [20, 0.5]]
/** Values KaTeX takes from its font tables (few and all in the corpus); the backbone is only a fallback. */
const COARSE: Bands = [[2, 0.1], [10, 0.5], [40, 2]]

/** Every length property KaTeX 0.19's HTML builder writes. */
export const LENGTH_PROPERTIES: Record<string, LengthProperty> = {
  height: { code: 'h', min: 0, max: 40, bands: BOX },
  'vertical-align': { code: 'va', min: -40, max: 4, bands: BOX },
  top: { code: 't', min: -40, max: 4, bands: BOX },
  'margin-right': { code: 'mr', min: -2, max: 10, bands: BOX },
  'margin-left': { code: 'ml', min: -2, max: 10, bands: BOX },
  'margin-top': { code: 'mt', min: -2, max: 10, bands: COARSE },
  bottom: { code: 'b', min: -10, max: 10, bands: COARSE },
  left: { code: 'l', min: -2, max: 2, bands: COARSE },
  width: { code: 'w', min: 0, max: 20, bands: COARSE },
  'min-width': { code: 'mw', min: 0, max: 20, bands: COARSE },
  'padding-left': { code: 'pl', min: 0, max: 10, bands: COARSE },
  'border-width': { code: 'bw', min: 0, max: 2, bands: RULE },
  'border-bottom-width': { code: 'bb', min: 0, max: 2, bands: RULE },
  'border-right-width': { code: 'br', min: 0, max: 20, bands: RULE },
  'border-top-width': { code: 'bt', min: 0, max: 20, bands: RULE },
}

/** Declarations KaTeX writes with a fixed value. */
export const FIXED_DECLARATIONS: Record<string, string> = {
  'position:relative': 'kpr',
  'border-style:solid': 'kbs',
  'border-right-style:solid': 'kbrs',
  'border-right-style:dashed': 'kbrd',
  'text-shadow:0.02em 0.01em 0.04px': 'kpmb',
}

/** Colours a model may ask for with \color, \textcolor, \colorbox, \fcolorbox; anything else snaps to the nearest. */
export const PALETTE: Record<string, string> = {
  black: '#000000',
  white: '#ffffff',
  gray: '#808080',
  red: '#d50000',
  err: '#cc0000',
  maroon: '#800000',
  orange: '#e65100',
  brown: '#795548',
  yellow: '#ffeb3b',
  olive: '#808000',
  green: '#2e7d32',
  lime: '#76ff03',
  teal: '#00796b',
  cyan: '#00bcd4',
  blue: '#1565c0',
  navy: '#000080',
  purple: '#7b1fa2',
  magenta: '#d81b9a',
  pink: '#f48fb1',
}

/** CSS colour names a model is likely to write, mapped to our palette. Unknown names are dropped. */
const COLOR_NAMES: Record<string, string> = {
  black: 'black', white: 'white', gray: 'gray', grey: 'gray', darkgray: 'gray', darkgrey: 'gray', lightgray: 'gray', silver: 'gray',
  red: 'red', darkred: 'maroon', maroon: 'maroon', crimson: 'red', orange: 'orange', darkorange: 'orange', orangered: 'orange',
  brown: 'brown', yellow: 'yellow', gold: 'yellow', olive: 'olive', green: 'green', darkgreen: 'green', forestgreen: 'green',
  lime: 'lime', limegreen: 'lime', teal: 'teal', cyan: 'cyan', aqua: 'cyan', turquoise: 'cyan', blue: 'blue', darkblue: 'navy',
  royalblue: 'blue', steelblue: 'blue', navy: 'navy', purple: 'purple', violet: 'purple', indigo: 'purple',
  magenta: 'magenta', fuchsia: 'magenta', pink: 'pink', hotpink: 'pink',
}

const COLOR_PROPERTIES: Record<string, string> = { color: 'kc', 'background-color': 'kbg', 'border-color': 'kbc' }

export type Vocabulary = Record<string, number[]>

const VOCAB_URL = new URL('./katex-vocab.json', import.meta.url)

let vocabulary: Vocabulary | undefined
/** The committed vocabulary: property code → sorted lengths in hundredths of an em. */
export function loadVocabulary(): Vocabulary {
  vocabulary ??= JSON.parse(readFileSync(VOCAB_URL, 'utf8')) as Vocabulary
  return vocabulary
}

/** The property's backbone (hundredths of an em) plus the corpus lengths within its range. */
export function vocabularyFor(prop: LengthProperty, corpus: Iterable<number>): number[] {
  const lo = Math.round(prop.min * 100)
  const hi = Math.round(prop.max * 100)
  const set = new Set<number>([lo, hi])
  let v = 0
  for (const [upTo, step] of prop.bands) {
    const stepH = Math.round(step * 100)
    for (; v <= Math.round(upTo * 100); v += stepH) {
      if (v <= hi) set.add(v)
      if (-v >= lo) set.add(-v)
    }
    v -= stepH
  }
  for (const c of corpus) if (c >= lo && c <= hi) set.add(c)
  return [...set].sort((a, b) => a - b)
}

const lookups = new Map<string, { values: number[]; exact: Set<number> }>()
function lookup(code: string) {
  let l = lookups.get(code)
  if (!l) {
    const values = loadVocabulary()[code] ?? [0]
    l = { values, exact: new Set(values) }
    lookups.set(code, l)
  }
  return l
}

/** The vocabulary entry nearest to a length in hundredths (binary search). */
function nearest(values: number[], v: number): number {
  let lo = 0
  let hi = values.length - 1
  if (v <= values[lo]) return values[lo]
  if (v >= values[hi]) return values[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (values[mid] <= v) lo = mid
    else hi = mid
  }
  return v - values[lo] <= values[hi] - v ? values[lo] : values[hi]
}

export function lengthClass(code: string, hundredths: number): string {
  return `k${code}${hundredths < 0 ? 'n' : ''}${Math.abs(hundredths)}`
}

const EM = /^(-?(?:\d+\.?\d*|\.\d+))em$/

/** Parses KaTeX's `0 -0.02em` (column separators) into its left/right margins. */
function marginShorthand(value: string): string[] | null {
  const m = /^0 (-?(?:\d+\.?\d*|\.\d+)em)$/.exec(value)
  return m ? [`margin-left:${m[1]}`, `margin-right:${m[1]}`] : null
}

function hexToRgb(hex: string): [number, number, number] | null {
  let h = hex.replace(/^#/, '').toLowerCase()
  if (!/^(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.test(h)) return null
  if (h.length <= 4) h = [...h.slice(0, 3)].map((c) => c + c).join('')
  return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)]
}

const paletteRgb = Object.entries(PALETTE).map(([name, hex]) => [name, hexToRgb(hex)!] as const)

/** A palette colour name for a CSS colour KaTeX wrote, or null to drop it (the text keeps its colour). */
export function paletteColor(value: string): string | null {
  const v = value.trim().toLowerCase()
  if (v === 'transparent') return 'transparent'
  if (COLOR_NAMES[v]) return COLOR_NAMES[v]
  const rgb = hexToRgb(v)
  if (!rgb) return null
  let best = 'black'
  let bestDistance = Infinity
  for (const [name, [r, g, b]] of paletteRgb) {
    if (name === 'err' && v !== '#cc0000') continue
    const d = (r - rgb[0]) ** 2 + (g - rgb[1]) ** 2 + (b - rgb[2]) ** 2
    if (d < bestDistance) {
      bestDistance = d
      best = name
    }
  }
  return best
}

export interface ConversionStats {
  /** Declarations that had no class and were dropped (property:value). */
  dropped: string[]
  /** Largest distance between a length and the class it got, in em. */
  maxError: number
}

/**
 * Turns one `style` attribute value into class names. Unknown declarations are dropped (and
 * reported in `stats` when given); invalid negative sizes are dropped as a browser would.
 */
export function styleToClasses(style: string, stats?: ConversionStats): string[] {
  const classes: string[] = []
  const declarations = style.split(';')
  for (let i = 0; i < declarations.length; i++) {
    const raw = declarations[i].trim()
    if (!raw) continue
    const colon = raw.indexOf(':')
    if (colon < 0) {
      stats?.dropped.push(raw)
      continue
    }
    const prop = raw.slice(0, colon).trim().toLowerCase()
    const value = raw.slice(colon + 1).trim()
    const fixed = FIXED_DECLARATIONS[`${prop}:${value}`]
    if (fixed) {
      classes.push(fixed)
      continue
    }
    if (prop === 'margin') {
      const parts = marginShorthand(value)
      if (parts) declarations.push(...parts)
      else stats?.dropped.push(raw)
      continue
    }
    const colorPrefix = COLOR_PROPERTIES[prop]
    if (colorPrefix) {
      const name = paletteColor(value)
      if (name) classes.push(`${colorPrefix}-${name}`)
      else stats?.dropped.push(raw)
      continue
    }
    const length = LENGTH_PROPERTIES[prop]
    const m = length && EM.exec(value)
    if (!length || !m) {
      stats?.dropped.push(raw)
      continue
    }
    const em = parseFloat(m[1])
    if (em < length.min && length.min === 0) continue // negative sizes are invalid CSS: the browser ignores them too
    const { values, exact } = lookup(length.code)
    const rounded = Math.round(em * 100)
    const chosen = exact.has(rounded) ? rounded : nearest(values, rounded)
    if (stats) stats.maxError = Math.max(stats.maxError, Math.abs(chosen / 100 - em))
    classes.push(lengthClass(length.code, chosen))
  }
  return classes
}

const cssNumber = (hundredths: number) => String(hundredths / 100)

/** The stylesheet with one rule per class; `!important` gives them the precedence the inline styles had. */
export function classesStylesheet(vocab: Vocabulary = loadVocabulary()): string {
  const rules: string[] = []
  for (const [prop, { code }] of Object.entries(LENGTH_PROPERTIES)) {
    for (const v of vocab[code] ?? []) rules.push(`.${lengthClass(code, v)}{${prop}:${cssNumber(v)}em!important}`)
  }
  for (const [decl, cls] of Object.entries(FIXED_DECLARATIONS)) rules.push(`.${cls}{${decl}!important}`)
  for (const [prop, prefix] of Object.entries(COLOR_PROPERTIES)) {
    for (const [name, hex] of Object.entries(PALETTE)) rules.push(`.${prefix}-${name}{${prop}:${hex}!important}`)
    rules.push(`.${prefix}-transparent{${prop}:transparent!important}`)
  }
  return rules.join('\n') + '\n'
}

/** The lengths (property code, hundredths of an em) in a style attribute, for building the vocabulary. */
export function lengthsOf(style: string): Array<[string, number]> {
  const out: Array<[string, number]> = []
  const declarations = style.split(';')
  for (let i = 0; i < declarations.length; i++) {
    const raw = declarations[i].trim()
    const colon = raw.indexOf(':')
    if (colon < 0) continue
    const prop = raw.slice(0, colon).trim().toLowerCase()
    const value = raw.slice(colon + 1).trim()
    if (prop === 'margin') declarations.push(...(marginShorthand(value) ?? []))
    const m = LENGTH_PROPERTIES[prop] && EM.exec(value)
    if (m) out.push([LENGTH_PROPERTIES[prop].code, Math.round(parseFloat(m[1]) * 100)])
  }
  return out
}

/** Every class styleToClasses can produce (for the sanitizer's allowlist). */
export const GENERATED_CLASS = /^(?:k(?:h|w|mw|va|t|b|l|mr|ml|mt|pl|bw|bb|br|bt)n?\d{1,4}|kpr|kbs|kbrs|kbrd|kpmb|k(?:c|bg|bc)-[a-z]{2,12})$/
