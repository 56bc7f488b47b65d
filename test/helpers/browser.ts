import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type Page, type Response } from 'playwright-core'
import type { TestApp } from './app.ts'
import type { Login } from './crawl.ts'

/** Debian's Chromium (apt-get install -y chromium); Playwright cannot download browsers here. */
export const CHROMIUM = '/usr/bin/chromium'

/** Short waits so a broken page fails the test with a clear message instead of hanging CI. */
export const STEP_TIMEOUT_MS = 10_000

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium poppler-utils\` (.ci/run does).`)
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    // As root Chromium needs --no-sandbox; the rest keeps it quiet and offline.
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  })
}

/** The real app listening on a free loopback port; returns its base URL. */
export async function listen(t: TestApp): Promise<string> {
  await t.app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = t.app.server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
}

/** Logs in through the login form, as a person would, and waits for the page it lands on. */
export async function loginWithForm(page: Page, base: string, login: Login): Promise<Response | null> {
  await page.goto(`${base}/login`)
  await page.fill('#school', login.school === null ? '' : String(login.school))
  await page.fill('#username', login.username)
  await page.fill('#password', login.password)
  const [response] = await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')])
  return response
}
