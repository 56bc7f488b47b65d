import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { isPrivateAddress } from '../src/plugins/metrics.ts'
import { loadConfig } from '../src/config.ts'

const apps: TestApp[] = []
after(async () => {
  for (const a of apps) await a.close()
})

test('without METRICS_TOKEN, /metrics answers direct requests from the private network only', async () => {
  const t = await buildTestApp()
  apps.push(t)
  const get = (remoteAddress: string, headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url: '/metrics', remoteAddress, headers })
  for (const inside of ['127.0.0.1', '10.1.2.3', '172.19.0.4', '192.168.1.10', '::1', 'fdaa:0:1:a7b:1::2', '::ffff:10.0.0.7']) {
    const res = await get(inside)
    assert.equal(res.statusCode, 200, inside)
    assert.match(res.body, /bagsh_http_requests_total/)
  }
  for (const outside of ['203.0.113.9', '8.8.8.8', '2001:db8::1', '172.32.0.1', '::ffff:8.8.8.8']) {
    const res = await get(outside)
    assert.equal(res.statusCode, 404, outside)
    assert.doesNotMatch(res.body, /bagsh_/)
  }
  // Through a proxy (the socket is the proxy's private address; the header names the real client).
  for (const header of ['x-forwarded-for', 'fly-client-ip', 'forwarded', 'x-real-ip']) {
    assert.equal((await get('172.16.0.2', { [header]: '203.0.113.9' })).statusCode, 404, header)
  }
})

test('with METRICS_TOKEN, /metrics wants the bearer token from anywhere', async () => {
  const token = 'scrape-token-0123456789abcdef'
  const t = await buildTestApp({ metricsToken: token })
  apps.push(t)
  const get = (headers: Record<string, string>, remoteAddress = '203.0.113.9') => t.app.inject({ method: 'GET', url: '/metrics', remoteAddress, headers })
  assert.equal((await get({ authorization: `Bearer ${token}` })).statusCode, 200)
  assert.equal((await get({ authorization: `Bearer ${token}`, 'x-forwarded-for': '203.0.113.9' })).statusCode, 200)
  assert.equal((await get({})).statusCode, 404)
  assert.equal((await get({}, '127.0.0.1')).statusCode, 404, 'a token, once set, is needed from inside too')
  assert.equal((await get({ authorization: `Bearer ${token}x` })).statusCode, 404)
  assert.equal((await get({ authorization: token })).statusCode, 404)
  assert.equal((await get({ authorization: 'Bearer ' })).statusCode, 404)
})

test('METRICS_TOKEN is checked at start; private addresses are recognised', () => {
  assert.throws(() => loadConfig({ METRICS_TOKEN: 'short', SESSION_SECRET: 'x'.repeat(40) }), /METRICS_TOKEN/)
  assert.equal(loadConfig({ METRICS_TOKEN: ' long-enough-token-123 ', SESSION_SECRET: 'x'.repeat(40) }).metricsToken, 'long-enough-token-123')
  assert.equal(loadConfig({ SESSION_SECRET: 'x'.repeat(40) }).metricsToken, null)
  assert.equal(isPrivateAddress(undefined), false)
  assert.equal(isPrivateAddress('not an ip'), false)
  assert.equal(isPrivateAddress('169.254.1.1'), true)
  assert.equal(isPrivateAddress('fe80::1'), true)
  assert.equal(isPrivateAddress('fec0::1'), false)
})
