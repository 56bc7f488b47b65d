import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync, gzipSync } from 'node:zlib'
import { renderAnswer, MAX_INPUT_CHARS, type Citation } from '../src/services/render/answer.ts'
import { MAX_EXPRESSIONS, renderKatex } from '../src/services/render/math.ts'
import { isSafeHref, sanitizeAnswerHtml } from '../src/services/render/sanitize.ts'
import { KATEX_FONTS_DIR, mathStylesheet, mathStylesheetUrl } from '../src/services/render/assets.ts'
import { LENGTH_PROPERTIES, loadVocabulary, styleToClasses, type ConversionStats } from '../src/services/render/katex-styles.ts'
import { buildVocabulary, readCorpus } from '../src/services/render/vocab-build.ts'
import { createI18n } from '../src/services/i18n.ts'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { PHYSICS_ANSWER, QUADRATIC_ANSWER, SAMPLE_CITATIONS } from './fixtures/answers.ts'
import { fontsUsed } from './fixtures/katex-fonts.ts'

const VNU_JAR = new URL('../node_modules/vnu-jar/build/dist/vnu.jar', import.meta.url).pathname
const TAGS = new Set(['p', 'br', 'strong', 'em', 's', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'a', 'span', 'div', 'svg', 'path', 'line'])

/**
 * Everything the CSP or our allowlist forbids, found in rendered HTML: tags outside the
 * allowlist, style attributes, event handlers, unsafe hrefs, external links without rel or with
 * target. Empty when the HTML is safe.
 */
function problems(html: string): string[] {
  const found: string[] = []
  const tagPattern = /<\/?([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s"'>\/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)\s*\/?>/g
  for (const m of html.matchAll(tagPattern)) {
    const [tag, name, attrs] = m
    if (!TAGS.has(name.toLowerCase())) found.push(`tag <${name}>`)
    for (const a of attrs.matchAll(/\s+([^\s"'>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g)) {
      const attr = a[1].toLowerCase()
      const value = (a[2] ?? a[3] ?? a[4] ?? '').replace(/&amp;/g, '&')
      if (attr === 'style') found.push(`style attribute: ${tag.slice(0, 120)}`)
      if (attr.startsWith('on')) found.push(`event handler: ${tag.slice(0, 120)}`)
      if (['id', 'target', 'src', 'srcset', 'action', 'formaction', 'xlink:href'].includes(attr)) found.push(`attribute ${attr}: ${tag.slice(0, 120)}`)
      if (attr === 'href') {
        if (!isSafeHref(value)) found.push(`href: ${value}`)
        if (/^https?:/i.test(value) && !/\srel="noopener noreferrer nofollow"/.test(attrs)) found.push(`external link without rel: ${tag}`)
      }
    }
  }
  // Every `<` that is not one of the tags above must have been escaped.
  const stray = html.replace(tagPattern, '').match(/<[a-zA-Z!?\/]/)
  if (stray) found.push(`stray markup: ${stray[0]}`)
  return found
}

function render(markdown: string, citations?: Citation[]) {
  const r = renderAnswer(markdown, { citations })
  assert.deepEqual(problems(r.html), [], `unsafe output for ${JSON.stringify(markdown.slice(0, 80))}:\n${r.html.slice(0, 2000)}`)
  return r
}

/** Text content of HTML (tags dropped, entities decoded) — what a reader sees. */
const text = (html: string) =>
  html.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&')

test('the safety check catches what the CSP or the allowlist forbids', () => {
  assert.deepEqual(problems('<p>text with &lt;script&gt; style=1 onload=2 javascript:x, a < b</p>'), [])
  for (const bad of ['<script>x</script>', '<p style="color:red">', '<span onclick="x()">', '<a href="javascript:x()">', '<a href="//evil.com">', '<a href="https://e.example">', '<a href="/x" target="_blank">', '<img src=x>', '<span id="main">', '<p>x <svg/onload=alert(1)></p>', '<!-- x -->']) {
    assert.notDeepEqual(problems(bad), [], bad)
  }
})

describe('markdown', () => {
  test('basics: paragraphs, emphasis, lists, code, quotes, rules, line breaks', () => {
    const { html, hasMath } = render('Эхний мөр\nдараагийн мөр\n\n**тод** ба _налуу_, ~~зурсан~~\n\n- нэг\n- хоёр\n  1. дэд\n\n3. гурав\n\n`код` ба\n\n```js\nlet x = 1 < 2\n```\n\n> ишлэл\n\n---')
    assert.equal(hasMath, false)
    assert.match(html, /<p>Эхний мөр<br>\nдараагийн мөр<\/p>/)
    assert.match(html, /<strong>тод<\/strong> ба <em>налуу<\/em>, <s>зурсан<\/s>/)
    assert.match(html, /<ul>\n<li>нэг<\/li>\n<li>хоёр\n<ol>\n<li>дэд<\/li>/)
    assert.match(html, /<ol start="3">/)
    assert.match(html, /<code>код<\/code>/)
    assert.match(html, /<pre><code class="language-js">let x = 1 &lt; 2\n<\/code><\/pre>/)
    assert.match(html, /<blockquote>\n<p>ишлэл<\/p>\n<\/blockquote>/)
    assert.match(html, /<hr>/)
    assert.doesNotMatch(html, /<br \/>|<hr \/>/)
  })

  test('tables keep alignment as classes (no style attribute) and scope their header cells', () => {
    const { html } = render('| Нэр | Тоо | Нэгж |\n|:--|:-:|--:|\n| a | 1 | км |')
    assert.match(html, /<th class="al-l" scope="col">Нэр<\/th>/)
    assert.match(html, /<th class="al-c" scope="col">Тоо<\/th>/)
    assert.match(html, /<td class="al-r">км<\/td>/)
  })

  test("the model's headings sit under the page's own (h3 by default, never h1)", () => {
    assert.match(render('# Гарчиг\n## Дэд').html, /<h3>Гарчиг<\/h3>\n<h4>Дэд<\/h4>/)
    // Levels never skip: ## then #### becomes h3, h4; a deeper first heading still starts at h3.
    assert.match(render('## A\n#### B\n## C').html, /<h3>A<\/h3>\n<h4>B<\/h4>\n<h3>C<\/h3>/)
    assert.match(render('### A\n# B\n### C').html, /<h3>A<\/h3>\n<h3>B<\/h3>\n<h4>C<\/h4>/)
    assert.match(renderAnswer('# A', { headingLevel: 2 }).html, /<h2>A<\/h2>/)
    assert.match(renderAnswer('###### A', { headingLevel: 5 }).html, /<h5>A<\/h5>/)
    assert.match(renderAnswer('# A', { headingLevel: 1 }).html, /<h2>A<\/h2>/)
  })

  test('Mongolian text comes through unchanged, bare URLs become safe links', () => {
    const mn = 'Фотосинтез гэдэг нь ургамал нарны гэрлийн энергийг ашиглан өөрийн хоол тэжээлийг бий болгох үйл явц юм. Өөдөө, үүр, ө ү ё.'
    assert.equal(text(render(mn).html).trim(), mn)
    const { html } = render('Дэлгэрэнгүй: https://mn.wikipedia.org/wiki/Фотосинтез болон http://www.example.mn')
    assert.match(html, /<a href="https:\/\/mn\.wikipedia\.org\/wiki\/%D0%A4[^"]*" rel="noopener noreferrer nofollow">https:\/\/mn\.wikipedia\.org\/wiki\/Фотосинтез<\/a>/)
    assert.match(html, /<a href="http:\/\/www\.example\.mn" rel="noopener noreferrer nofollow">http:\/\/www\.example\.mn<\/a>/)
    assert.doesNotMatch(render('бичих: user@example.com').html, /mailto|<a /)
  })

  test('relative links stay and get no rel; markdown images become links, never <img>', () => {
    const { html } = render('[ном](/library/3?page=2#p-2) [дээш](#top) ![зураг](https://evil.example/x.png)')
    assert.match(html, /<a href="\/library\/3\?page=2#p-2">ном<\/a>/)
    assert.match(html, /<a href="#top">дээш<\/a>/)
    assert.doesNotMatch(html, /<img/)
    assert.match(html, /!<a href="https:\/\/evil\.example\/x\.png" rel="noopener noreferrer nofollow">зураг<\/a>/)
  })
})

describe('math', () => {
  test('all four delimiters are typeset; hasMath says so', () => {
    const cases = [
      ['$x^2$', false],
      ['\\(x^2\\)', false],
      ['$$x^2$$', true],
      ['\\[x^2\\]', true],
      ['Inline display $$x^2$$ in text', true],
      ['Inline \\[x^2\\] in text', true],
      ['$$\nx^2\n$$', true],
      ['\\[\nx^2\n\\]', true],
    ] as const
    for (const [src, display] of cases) {
      const r = render(src)
      assert.equal(r.hasMath, true, src)
      assert.match(r.html, /class="katex"/, src)
      assert.equal(r.html.includes('katex-display'), display, src)
      assert.doesNotMatch(text(r.html), /\$|\\\(|\\\[/, `delimiters left in ${src}`)
    }
  })

  test('display blocks work inside lists and quotes, and may interrupt a paragraph', () => {
    const { html } = render('Тэгшитгэл:\n$$\na+b\n$$\nдараа нь\n\n- алхам\n  $$c=d$$\n\n> $$\n> e=f\n> $$')
    assert.equal((html.match(/katex-display/g) ?? []).length, 3)
    assert.match(html, /<p>Тэгшитгэл:<\/p>\n<div class="math" role="img" aria-label="a\+b">/)
    assert.match(html, /aria-label="e=f"/)
  })

  test('dollars that are not math stay text: money, escapes, code, spaces', () => {
    for (const src of ['Үнэ нь $5 ба $10 байна', 'Энэ \\$x\\$ биш', '`$x$` код', 'a $ b $ c', '$$ $$', '$']) {
      const r = render(src)
      assert.equal(r.hasMath, false, src)
      assert.doesNotMatch(r.html, /katex/, src)
    }
  })

  test('markdown does not reach inside math: underscores and stars are TeX', () => {
    const { html } = render('$a_1 * b_2 * c_3$ and $x_{*}$')
    assert.doesNotMatch(html, /<em>|<strong>/)
    assert.match(html, /aria-label="a_1 \* b_2 \* c_3"/)
  })

  test('Cyrillic inside math renders without errors', () => {
    const { html } = render('$v = 60\\ \\text{км/ц}$ ба $\\text{Хариу: } x = 4$ ба $\\ce{H2O}$')
    assert.doesNotMatch(html, /katex-error|kc-err/)
    assert.match(text(html), /км\/ц/)
    assert.match(text(html), /Хариу:/)
  })

  test('invalid LaTeX never throws: the source shows in an error span', () => {
    for (const bad of ['$\\frac{1}{$', '$\\begin{matrix} a & b$', '$x^^2$', '$\\undefinedcommand{x}$', '$}$', '$\\left( x$']) {
      const { html } = render(bad)
      assert.match(html, /katex-error|kc-err/, bad)
    }
    const { html } = render('$\\frac{1}{$')
    assert.match(html, /<span class="katex-error kc-err" title="ParseError: KaTeX parse error: [^"]+">\\frac\{1\}\{<\/span>/)
  })

  test('math is labelled for screen readers with its source (KaTeX HTML is aria-hidden)', () => {
    const { html } = render('$\\frac{a}{b} < c$')
    assert.match(html, /<span class="math" role="img" aria-label="\\frac\{a\}\{b\} &lt; c"><span class="katex"><span class="katex-html" aria-hidden="true">/)
  })

  test('formulas sanitized apart come out exactly as sanitizing the whole answer would; repeats are identical', () => {
    // The whole answer with KaTeX's raw HTML inline, sanitized at once (how it was done before).
    const cases: [string, string][] = [
      ['а $6CO_2 + 6H_2O \\to C_6H_{12}O_6$ б', `<p>а <span class="math" role="img" aria-label="6CO_2 + 6H_2O \\to C_6H_{12}O_6">${renderKatex('6CO_2 + 6H_2O \\to C_6H_{12}O_6', false)}</span> б</p>\n`],
      ['$$\\frac{a}{\\sqrt{b}}$$', `<div class="math" role="img" aria-label="\\frac{a}{\\sqrt{b}}">${renderKatex('\\frac{a}{\\sqrt{b}}', true)}</div>\n`],
      ['**тод** $\\color{red}{y}$', `<p><strong>тод</strong> <span class="math" role="img" aria-label="\\color{red}{y}">${renderKatex('\\color{red}{y}', false)}</span></p>\n`],
    ]
    for (const [src, raw] of cases) {
      const once = render(src).html
      assert.equal(once, sanitizeAnswerHtml(raw), src)
      assert.equal(render(src).html, once, 'the same formula renders the same the second time (from the cache)')
      assert.doesNotMatch(once, /[\u0001\u0002]/)
    }
  })

  test('marker characters in the model text cannot pull in a formula', () => {
    const r = render('$x^2$ then \u00010\u0002 and \u0001' + '0\u0002 text')
    assert.equal((r.html.match(/class="katex"/g) ?? []).length, 1)
    assert.match(text(r.html), /then 0 and 0 text/)
  })

  test('no inline style anywhere: KaTeX lengths become classes, colours a palette', () => {
    const { html } = render('$\\color{red}{x} + \\textcolor{#00f}{y} + \\colorbox{yellow}{z} + \\fcolorbox{red}{white}{w} + \\phantom{q}\\sqrt[3]{x} \\rule{1em}{0.1em}\\kern0.5em\\pmb{x}$')
    assert.doesNotMatch(html, /style=/)
    for (const cls of ['kc-red', 'kc-blue', 'kbg-yellow', 'kbc-red', 'kc-transparent', 'kpmb', 'kbr', 'kbt']) assert.match(html, new RegExp(`class="[^"]*\\b${cls}`), cls)
  })
})

describe('citations', () => {
  const citations: Citation[] = [
    { n: 1, href: '/library/5?page=12#p-12', label: 'Алгебр 9 — 12-р тал' },
    { n: 2, href: '/library/5?page=13&x=1#p-13', label: 'Ном "<b>" & \'x\'' },
  ]

  test('[n] becomes a link to the textbook page; lists too; unknown numbers stay text', () => {
    const { html } = render('Үүнийг [1] харна уу. Мөн [1, 2] ба [1][2]. Харин [3] ба [1, 3] үгүй.', citations)
    assert.match(html, /<a href="\/library\/5\?page=12#p-12" title="Алгебр 9 — 12-р тал" class="cite">\[1\]<\/a> харна/)
    assert.match(html, /\[<a href="\/library\/5\?page=12#p-12"[^>]*>1<\/a>, <a href="\/library\/5\?page=13&amp;x=1#p-13"[^>]*>2<\/a>\]/)
    assert.match(html, /class="cite">\[1\]<\/a><a [^>]*class="cite">\[2\]<\/a>/)
    assert.match(html, /Харин \[3\] ба \[1, 3\] үгүй/)
  })

  test('labels and hrefs are escaped; citation markers in code or math stay as they are', () => {
    const { html } = render('[2] `[1]` $a[1]$', citations)
    assert.match(html, /title="Ном &quot;&lt;b&gt;&quot; &amp; 'x'"/)
    assert.match(html, /<code>\[1\]<\/code>/)
    assert.equal((html.match(/class="cite"/g) ?? []).length, 1)
  })

  test('a citation inside link text does not nest links; without citations nothing changes', () => {
    assert.equal((render('[see [1] here](/x)', citations).html.match(/<a /g) ?? []).length, 1)
    assert.match(render('[1]').html, /<p>\[1\]<\/p>/)
  })

  test('an unsafe citation href is not linked', () => {
    const { html } = render('[1] [2]', [
      { n: 1, href: 'javascript:alert(1)', label: 'x' },
      { n: 2, href: '//evil.com/x', label: 'y' },
    ])
    assert.doesNotMatch(html, /<a /)
  })
})

describe('hostile model output', () => {
  const hostile: Array<[string, string, (html: string) => void]> = [
    ['script tag', '<script>alert(1)</script>', (h) => assert.match(h, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/)],
    ['img onerror', '<img src=x onerror=alert(1)>', (h) => assert.doesNotMatch(h, /<img/)],
    ['iframe', '<iframe src="https://evil.com"></iframe>', (h) => assert.doesNotMatch(h, /<iframe/)],
    ['svg onload', '<svg onload=alert(1)><circle r=1 /></svg>', (h) => assert.doesNotMatch(h, /<svg/)],
    ['style tag', '<style>body{display:none}</style>', (h) => assert.doesNotMatch(h, /<style/)],
    ['form', '<form action="https://evil.com"><input name=pin></form>', (h) => assert.doesNotMatch(h, /<form|<input/)],
    ['object/embed', '<object data="x"></object><embed src="x">', (h) => assert.doesNotMatch(h, /<object|<embed/)],
    ['html block', '<div onclick="alert(1)">\n\n**x**\n\n</div>', (h) => assert.doesNotMatch(h, /<div onclick/)],
    ['a href //', '<a href="//evil.com">x</a>', (h) => assert.doesNotMatch(h, /<a /)],
    ['javascript link', '[x](javascript:alert(1))', (h) => assert.equal(h, '<p>x</p>\n')],
    ['mixed-case scheme', '[x](JaVaScRiPt:alert(1))', (h) => assert.equal(h, '<p>x</p>\n')],
    ['entity-encoded scheme', '[x](&#106;avascript:alert(1))', (h) => assert.equal(h, '<p>x</p>\n')],
    ['tab in scheme', '[x](java\tscript:alert(1))', (h) => assert.doesNotMatch(h, /<a /)],
    ['data: link', '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)', (h) => assert.equal(h, '<p>x</p>\n')],
    ['vbscript link', '[x](vbscript:msgbox(1))', (h) => assert.equal(h, '<p>x</p>\n')],
    ['protocol-relative link', '[x](//evil.com)', (h) => assert.equal(h, '<p>x</p>\n')],
    ['backslash host', '[x](/\\evil.com) [y](\\\\evil.com)', (h) => assert.doesNotMatch(h, /href="[^"]*\\/)],
    ['file link', '[x](file:///etc/passwd)', (h) => assert.equal(h, '<p>x</p>\n')],
    ['reference link', '[x][r]\n\n[r]: javascript:alert(1)', (h) => assert.equal(h, '<p>x</p>\n')],
    ['autolink', '<javascript:alert(1)>', (h) => assert.doesNotMatch(h, /<a /)],
    ['link title quote', '[x](https://ok.example "a\\" onmouseover=\\"alert(1)")', (h) => assert.match(h, /title="a&quot; onmouseover=&quot;alert\(1\)"/)],
    ['target injection', '[x](https://ok.example){target=_blank}', (h) => assert.doesNotMatch(h, /<a [^>]*target=/)],
    ['\\href in math', '$\\href{javascript:alert(1)}{x}$', (h) => assert.doesNotMatch(h, /<a /)],
    ['\\url in math', '$\\url{javascript:alert(1)}$ $\\url{https://evil.com}$', (h) => assert.doesNotMatch(h, /<a /)],
    ['\\htmlStyle', '$\\htmlStyle{color:red;background:url(x)}{x}$', (h) => assert.match(h, /<span class="kc-err">\\htmlStyle<\/span>/)],
    ['\\style / \\class', '$\\style{color:red}{x}\\class{skip}{y}$', (h) => assert.doesNotMatch(h, /class="[^"]*\bskip\b/)],
    ['\\htmlClass / \\htmlId / \\htmlData', '$\\htmlClass{skip}{x}\\htmlId{main}{y}\\htmlData{foo=bar}{z}$', (h) => assert.doesNotMatch(h, /\sid=|data-foo|class="[^"]*\bskip\b/)],
    ['\\includegraphics', '$\\includegraphics[height=1em]{https://evil.com/x.png}$', (h) => assert.doesNotMatch(h, /<img/)],
    ['html in \\text', '$\\text{<script>alert(1)</script>}$', (h) => assert.doesNotMatch(h, /<script/)],
    ['attribute breakout in color', '$\\color{red" onmouseover="alert(1)}{x}$', (h) => assert.match(h, /class="katex-error kc-err" title="[^"]*">\\color\{red" onmouseover/)],
    ['css in color', '$\\color{expression(alert(1))}{x}\\colorbox{url(x)}{y}$', (h) => assert.match(h, /class="katex-error kc-err"/)],
    ['math delimiters smuggling html', '$x$<script>alert(1)</script>$y$', (h) => assert.doesNotMatch(h, /<script/)],
    ['NUL and controls', 'a\u0000b\u0007c\u001bd', (h) => assert.equal(h, '<p>abcd</p>\n')],
  ]
  for (const [name, src, check] of hostile) {
    test(name, () => {
      const { html } = render(src)
      check(html)
      assert.doesNotMatch(html, /<(?:script|iframe|img|object|embed|form|style|math)\b|href="\s*(?:javascript|vbscript|data):/i)
    })
  }

  test('no hostile case puts a dangerous scheme anywhere in the visible links', () => {
    for (const [, src] of hostile) assert.doesNotMatch(render(src).html, /href="[^"]*(?:javascript|vbscript|data):/i)
  })

  test('the sanitizer alone stops markup that markdown-it would never produce', () => {
    const html = sanitizeAnswerHtml(
      '<p onclick="x()" style="color:red" id="a">t</p><a href="javascript:x()" target="_blank">j</a><a href="https://e.example" target="_blank">e</a>' +
        '<svg onload="x()"><script>x()</script><foreignObject><img src=x></foreignObject><path d="M0 0" onclick="x()"/></svg><span class="katex skip" style="height:1em;background:url(x)">k</span><iframe src=x></iframe><math><mi>x</mi></math>',
    )
    assert.deepEqual(problems(html), [])
    assert.match(html, /<p>t<\/p><span>j<\/span><a href="https:\/\/e\.example" rel="noopener noreferrer nofollow">e<\/a>/)
    assert.match(html, /<span class="katex kh100">k<\/span>/)
    assert.doesNotMatch(html, /<script|<img|<iframe|<math|foreignObject|onload|onclick/i)
  })
})

describe('limits', () => {
  const timed = (src: string) => {
    const t0 = performance.now()
    const r = render(src)
    return { ...r, ms: performance.now() - t0 }
  }
  // Generous bounds so a busy CI machine passes; measured values are in docs/decisions/007-math-rendering-without-inline-styles.md.
  const BOUND_MS = 3000

  test('1 MB of text is cut with a visible note', () => {
    const r = timed(('Ургамал нарны гэрлийг шингээнэ. '.repeat(40) + '\n\n').repeat(1000))
    assert.ok(r.ms < BOUND_MS, `${r.ms} ms`)
    assert.equal(r.truncated, true)
    assert.ok(text(r.html).length <= MAX_INPUT_CHARS + 200)
    assert.match(r.html, /<p class="answer-note">Хариулт хэт урт тул үлдсэн хэсгийг харуулсангүй\.<\/p>\n$/)
    assert.match(renderAnswer('x'.repeat(MAX_INPUT_CHARS + 1), { t: createI18n().getFixedT('en') }).html, /The answer was too long/)
  })

  test('10,000 math expressions: the first are typeset, the rest shown as source, with a note', () => {
    const r = timed(Array.from({ length: 10_000 }, (_, i) => `$x_{${i}}^2$`).join(' '))
    assert.ok(r.ms < BOUND_MS, `${r.ms} ms`)
    // Typesetting stops at MAX_EXPRESSIONS or when KaTeX's HTML reaches MAX_KATEX_HTML, whichever comes first.
    const typeset = (r.html.match(/class="katex"/g) ?? []).length
    assert.ok(typeset >= 100 && typeset <= MAX_EXPRESSIONS, String(typeset))
    assert.match(r.html, /<code class="math-source">\$x_\{\d+\}\^2\$<\/code>/)
    assert.match(r.html, /томьёог эх бичвэрээр нь үлдээв/)
    assert.equal(r.truncated, true)
  })

  test('pathological input renders in bounded time', () => {
    const cases: Record<string, string> = {
      dollars: '$'.repeat(1_000_000),
      'unclosed $': '$a '.repeat(300_000),
      'unclosed \\(': '\\( '.repeat(100_000),
      'unclosed $$ blocks': '$$x\n'.repeat(100_000),
      'deep quotes': '>'.repeat(100_000) + ' x',
      'deep lists': Array.from({ length: 3000 }, (_, i) => ' '.repeat(i * 2) + '- x').join('\n'),
      'deep emphasis': '*'.repeat(50_000) + 'x' + '*'.repeat(50_000),
      brackets: '['.repeat(100_000) + 'x' + ']'.repeat(100_000),
      'wide table': '|' + 'a|'.repeat(5000) + '\n|' + '-|'.repeat(5000) + '\n' + ('|' + 'b|'.repeat(5000) + '\n').repeat(20),
      'TeX macro bomb': '$\\def\\a#1{#1#1}' + '\\a{'.repeat(20) + 'x' + '}'.repeat(20) + '$',
      'TeX recursion': '$\\def\\a{\\a\\a}\\a$',
      'huge rule': '$\\rule{100000em}{100000em}\\kern100000em x$',
      'deep TeX groups': '$' + '{'.repeat(900) + 'x' + '}'.repeat(900) + '$',
      'long TeX': '$' + '\\frac{1}{2}+'.repeat(200) + '1$',
      'heavy display math': Array.from({ length: 300 }, () => '$$\\frac{a^2+b^2}{\\sqrt{c}}$$').join('\n\n'),
      citations: '[1] '.repeat(100_000),
    }
    for (const [name, src] of Object.entries(cases)) {
      const r = timed(src)
      assert.ok(r.ms < BOUND_MS, `${name}: ${r.ms.toFixed(0)} ms`)
      assert.ok(r.html.length < 600_000, `${name}: ${r.html.length} bytes`)
    }
  })

  test('KaTeX sizes are capped (maxSize) so a rule cannot cover the page', () => {
    const { html } = render('$\\rule{100000em}{100000em}$')
    for (const m of html.matchAll(/\bk(?:h|w|br|bt)(\d+)\b/g)) assert.ok(Number(m[1]) <= 4000, m[0])
  })
})

describe('KaTeX inline styles as classes', () => {
  const corpus = readCorpus()

  test('the committed vocabulary matches the corpus and the installed KaTeX (rerun scripts/build-katex-vocab.ts)', () => {
    assert.deepEqual(loadVocabulary(), buildVocabulary(corpus))
  })

  test('every style KaTeX writes for the corpus becomes classes exactly (≤ 0.005em), none dropped', () => {
    const stats: ConversionStats = { dropped: [], maxError: 0 }
    let styles = 0
    for (const { tex, display } of corpus) {
      const raw = renderKatex(tex, display)
      styles += (raw.match(/ style="/g) ?? []).length
      const clean = sanitizeAnswerHtml(raw, stats)
      assert.doesNotMatch(clean, /style=/, tex)
    }
    assert.ok(styles > 3000, `corpus too small: ${styles} style attributes`)
    // Colours outside the palette are the only thing dropped, and the corpus uses none.
    assert.deepEqual(stats.dropped, [])
    assert.ok(stats.maxError <= 0.005 + 1e-9, `max error ${stats.maxError}`)
  })

  test('lengths outside the corpus snap to the backbone with a bounded error', () => {
    const stats: ConversionStats = { dropped: [], maxError: 0 }
    for (let v = -45; v <= 45; v += 0.0137) styleToClasses(`top:${v.toFixed(4)}em;height:${Math.abs(v).toFixed(4)}em;margin-right:${(v / 5).toFixed(4)}em`, stats)
    assert.ok(stats.maxError > 0.01, 'the probe should miss the vocabulary')
    // Within ranges: half the coarsest step that applies; beyond them, clamped.
    const s2: ConversionStats = { dropped: [], maxError: 0 }
    for (let v = -4; v <= 4; v += 0.0037) styleToClasses(`top:${v.toFixed(4)}em;vertical-align:${v.toFixed(4)}em;height:${Math.abs(v).toFixed(4)}em`, s2)
    assert.ok(s2.maxError <= 0.055, `error up to 4em: ${s2.maxError}`)
    const s3: ConversionStats = { dropped: [], maxError: 0 }
    for (let v = -40; v <= 0; v += 0.0937) styleToClasses(`top:${v.toFixed(4)}em`, s3)
    assert.ok(s3.maxError <= 0.505, `error up to 40em: ${s3.maxError}`)
    assert.deepEqual(styleToClasses('height:-0.5em;width:-1em'), [], 'negative sizes are invalid CSS and dropped')
    assert.deepEqual(styleToClasses('top:-100em'), ['ktn4000'], 'clamped to the range')
  })

  test('every class in rendered answers has a rule in the math stylesheet', () => {
    const css = mathStylesheet().css
    const html = corpus.map((c) => render(c.display ? `$$${c.tex}$$` : `$${c.tex}$`).html).join('\n')
    const classes = new Set([...html.matchAll(/class="([^"]*)"/g)].flatMap((m) => m[1].split(' ')))
    const own = new Set(['math', 'math-source', 'katex-error', 'cite', 'answer-note', 'al-l', 'al-c', 'al-r'])
    const missing = [...classes].filter((c) => !own.has(c) && !css.includes(`.${c}{`) && !new RegExp(`\\.${c}[\\s.,>:{\\[]`).test(css))
    assert.deepEqual(missing, [])
  })

  test('the stylesheet: one rule per length in the vocabulary, precedence of inline styles', () => {
    const css = mathStylesheet().css
    const vocab = loadVocabulary()
    for (const { code } of Object.values(LENGTH_PROPERTIES)) assert.ok(vocab[code].length > 0, code)
    assert.match(css, /\.kh123\{height:1\.23em!important\}/)
    assert.match(css, /\.ktn323\{top:-3\.23em!important\}/)
    assert.match(css, /\.kc-red\{color:#d50000!important\}/)
  })
})

describe('math assets', () => {
  let t: TestApp
  after(async () => t?.close())

  test('the stylesheet is served from our origin, versioned, immutable, gzipped, without ttf', async () => {
    t = await buildTestApp()
    const url = mathStylesheetUrl()
    assert.match(url, /^\/static\/math\/katex\.css\?v=[0-9a-f]{10}$/)
    const res = await t.app.inject({ url, headers: { 'accept-encoding': 'gzip, deflate' } })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^text\/css/)
    assert.equal(res.headers['content-encoding'], 'gzip')
    assert.match(String(res.headers['cache-control']), /immutable/)
    const css = gunzipSync(res.rawPayload).toString('utf8')
    assert.equal(css, mathStylesheet().css)
    assert.doesNotMatch(css, /\.ttf|truetype/)
    assert.match(css, /font-display:swap/)
    assert.match(css, /url\(fonts\/KaTeX_Main-Regular\.woff2\?v=[\d.]+\) format\("woff2"\),url\(fonts\/KaTeX_Main-Regular\.woff\?v=[\d.]+\) format\("woff"\)/)
    const plain = await t.app.inject({ url })
    assert.equal(plain.headers['content-encoding'], undefined)
    assert.equal(plain.body, css)
    const again = await t.app.inject({ url, headers: { 'if-none-match': String(res.headers.etag) } })
    assert.equal(again.statusCode, 304)
    assert.match(String(res.headers['content-security-policy']), /style-src 'self'(;|$)/)
  })

  test('woff2 and woff fonts are served immutable; ttf and anything else are not', async () => {
    t ??= await buildTestApp()
    for (const [file, type] of [['KaTeX_Main-Regular.woff2', 'font/woff2'], ['KaTeX_Math-Italic.woff', 'font/woff']]) {
      const res = await t.app.inject({ url: `/static/math/fonts/${file}?v=1` })
      assert.equal(res.statusCode, 200, file)
      assert.equal(res.headers['content-type'], type)
      assert.match(String(res.headers['cache-control']), /immutable/)
      assert.equal(res.rawPayload.length, statSync(join(KATEX_FONTS_DIR, file)).size)
    }
    for (const url of ['/static/math/fonts/KaTeX_Main-Regular.ttf', '/static/math/fonts/../katex.mjs', '/static/math/fonts/%2e%2e/katex.mjs', '/static/math/fonts/', '/static/math/katex-swap.min.css']) {
      assert.equal((await t.app.inject({ url })).statusCode, 404, url)
    }
  })
})

describe('budget and validity', () => {
  test('a typical school-math answer: math CSS + the fonts it uses ≤ 100 KB gzipped', () => {
    const { html } = render(QUADRATIC_ANSWER + '\n\n' + PHYSICS_ANSWER, SAMPLE_CITATIONS)
    const fonts = fontsUsed(html)
    assert.ok(fonts.has('KaTeX_Main-Regular.woff2') && fonts.has('KaTeX_Math-Italic.woff2'), [...fonts].join())
    const fontBytes = [...fonts].reduce((n, f) => n + statSync(join(KATEX_FONTS_DIR, f)).size, 0)
    const cssBytes = mathStylesheet().gzip.length
    const total = cssBytes + fontBytes
    console.log(`math weight: css ${cssBytes} B gz + fonts ${fontBytes} B (${[...fonts].join(', ')}) = ${(total / 1024).toFixed(1)} KB; answer HTML ${html.length} B, ${gzipSync(html).length} B gz`)
    assert.ok(total <= 100 * 1024, `${total} bytes`)
  })

  test('rendered answers are valid HTML (vnu, zero errors)', async () => {
    const body = [QUADRATIC_ANSWER, PHYSICS_ANSWER, '# Гарчиг\n\n- a\n- b\n\n```\ncode\n```\n\n[x](javascript:alert(1)) <script>x</script> $\\href{javascript:x}{y}$ $\\frac{1}{$ $\\color{red}{x}\\cancel{y}\\overrightarrow{AB}\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$']
      // An htmx fragment may bring the math stylesheet with it: <link rel="stylesheet"> is allowed in <body>.
      .map((md) => `<section class="answer">\n<link rel="stylesheet" href="${mathStylesheetUrl()}">\n${renderAnswer(md, { citations: SAMPLE_CITATIONS }).html}</section>`)
      .join('\n')
    const page = `<!DOCTYPE html>\n<html lang="mn">\n<head>\n<meta charset="utf-8">\n<title>Хариулт</title>\n<link rel="stylesheet" href="${mathStylesheetUrl()}">\n</head>\n<body>\n<main>\n<h1>Хариулт</h1>\n<h2>Асуулт</h2>\n${body}\n</main>\n</body>\n</html>\n`
    const dir = mkdtempSync(join(tmpdir(), 'bagsh-render-'))
    try {
      const file = join(dir, 'answer.html')
      writeFileSync(file, page)
      let stderr = ''
      try {
        ;({ stderr } = await promisify(execFile)('java', ['-jar', VNU_JAR, '--errors-only', '--format', 'json', file], { maxBuffer: 16 * 1024 * 1024 }))
      } catch (err) {
        const e = err as { code?: unknown; stderr?: string }
        if (e.code === 'ENOENT') throw new Error('java not found: vnu-jar needs Java (CI has Java 17)')
        stderr = e.stderr ?? ''
      }
      const messages = (JSON.parse(stderr) as { messages: Array<{ type: string; message: string; extract?: string }> }).messages
      assert.deepEqual(messages.map((m) => `${m.type}: ${m.message} ${m.extract ?? ''}`), [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
