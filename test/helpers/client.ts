import type { FastifyInstance, LightMyRequestResponse } from 'fastify'

/**
 * A browser without JavaScript, over app.inject: keeps cookies, sends forms with the CSRF
 * token found on the last page, and does not follow redirects (tests assert on them).
 */
export class TestClient {
  readonly app: FastifyInstance
  readonly cookies = new Map<string, string>()
  csrf: string | null = null
  headers: Record<string, string> = {}
  /** The client's IP as the app sees it (login throttling is per IP). */
  remoteAddress = '127.0.0.1'

  constructor(app: FastifyInstance) {
    this.app = app
  }

  private cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }

  private remember(res: LightMyRequestResponse): LightMyRequestResponse {
    for (const c of res.cookies as { name: string; value: string; expires?: Date; maxAge?: number }[]) {
      const expired = (c.expires && c.expires.getTime() <= Date.now()) || c.maxAge === 0 || c.value === ''
      if (expired) this.cookies.delete(c.name)
      else this.cookies.set(c.name, c.value)
    }
    const token = /name="_csrf" value="([^"]+)"/.exec(res.body)
    if (token) this.csrf = token[1]
    return res
  }

  async get(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.remember(await this.app.inject({ method: 'GET', url, remoteAddress: this.remoteAddress, headers: { cookie: this.cookieHeader(), ...this.headers, ...headers } }))
  }

  /** POSTs a urlencoded form; fetches a page first when no CSRF token is known yet. */
  async post(url: string, form: Record<string, string | string[]> = {}, opts: { csrf?: boolean } = {}): Promise<LightMyRequestResponse> {
    if (opts.csrf !== false && !this.csrf) await this.get('/login')
    const body = new URLSearchParams()
    if (opts.csrf !== false && this.csrf && !('_csrf' in form)) body.append('_csrf', this.csrf)
    for (const [k, v] of Object.entries(form)) for (const item of Array.isArray(v) ? v : [v]) body.append(k, item)
    return this.remember(
      await this.app.inject({
        method: 'POST',
        url,
        remoteAddress: this.remoteAddress,
        payload: body.toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookieHeader(), ...this.headers },
      }),
    )
  }

  async login(school: string | number | null, username: string, password: string): Promise<LightMyRequestResponse> {
    const res = await this.post('/login', { school: school === null ? '' : String(school), username, password })
    if (res.statusCode !== 303) throw new Error(`login as ${username} failed: ${res.statusCode}`)
    return res
  }
}
