import i18next, { type i18n, type TFunction } from 'i18next'
import { readFileSync } from 'node:fs'

export const LANGUAGES = ['mn', 'en'] as const
export type Language = (typeof LANGUAGES)[number]
export const DEFAULT_LANGUAGE: Language = 'mn'

export type Translate = TFunction

function readLocale(lang: Language): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../../locales/${lang}.json`, import.meta.url), 'utf8'))
}

/** One i18next instance per app; resources are loaded synchronously from locales/. */
export function createI18n(): i18n {
  const instance = i18next.createInstance()
  void instance.init({
    initAsync: false,
    lng: DEFAULT_LANGUAGE,
    fallbackLng: DEFAULT_LANGUAGE,
    supportedLngs: [...LANGUAGES],
    resources: Object.fromEntries(LANGUAGES.map((l) => [l, { translation: readLocale(l) }])),
    // Eta escapes on output; escaping here too would double-escape.
    interpolation: { escapeValue: false },
    returnNull: false,
  })
  return instance
}

export function isLanguage(value: unknown): value is Language {
  return typeof value === 'string' && (LANGUAGES as readonly string[]).includes(value)
}

/** The language cookie wins, then the first supported Accept-Language entry, then Mongolian. */
export function pickLanguage(cookie: string | undefined, acceptLanguage: string | undefined): Language {
  if (isLanguage(cookie)) return cookie
  if (acceptLanguage) {
    const ranked = acceptLanguage
      .split(',')
      .map((part) => {
        const [tag, ...params] = part.trim().split(';')
        const q = params.find((p) => p.trim().startsWith('q='))
        return { lang: tag.trim().toLowerCase().split('-')[0], q: q ? Number(q.trim().slice(2)) || 0 : 1 }
      })
      .filter((entry) => entry.q > 0)
      .sort((a, b) => b.q - a.q)
    for (const entry of ranked) if (isLanguage(entry.lang)) return entry.lang
  }
  return DEFAULT_LANGUAGE
}

/**
 * One translate function per language for the app's lifetime (rather than one per request).
 * Calls with a key alone — most of them — are looked up once and then come from a map: the
 * resources never change while the app runs. Calls with options (interpolation, counts) go to
 * i18next each time.
 */
export function fixedTranslators(instance: i18n): Record<Language, Translate> {
  const make = (lang: Language): Translate => {
    const t = instance.getFixedT(lang)
    const known = new Map<string, string>()
    const cached = (key: unknown, ...rest: unknown[]) => {
      if (rest.length || typeof key !== 'string') return (t as unknown as (...args: unknown[]) => string)(key, ...rest)
      let value = known.get(key)
      if (value === undefined) known.set(key, (value = t(key)))
      return value
    }
    return cached as unknown as Translate
  }
  return Object.fromEntries(LANGUAGES.map((lang) => [lang, make(lang)])) as Record<Language, Translate>
}
