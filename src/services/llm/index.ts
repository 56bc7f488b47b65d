import { Agent } from 'undici'
import type { LlmConfig, LlmProviderConfig } from '../../config.ts'
import { CircuitBreaker } from './breaker.ts'
import { LlmChain, type ChainProvider, type LlmLogger } from './chain.ts'
import { createOpenAiCompatibleProvider } from './openai-compatible.ts'
import type { Llm } from './types.ts'

export * from './types.ts'
export type { LlmLogger } from './chain.ts'

/**
 * The deployment's LLM: OpenRouter's models in order, then the optional second endpoint's.
 * Returns null when no provider is configured — the caller answers in offline mode.
 */
export function createLlm(config: LlmConfig, options: { logger?: LlmLogger } = {}): Llm | null {
  const configured = [config.openrouter, config.fallback].filter((p): p is LlmProviderConfig => p !== null)
  if (configured.length === 0) return null
  // One pool for all providers. Long streams are normal, so undici's own timeouts are off
  // (the chain's first-token and idle timers decide).
  const dispatcher = new Agent({ headersTimeout: 0, bodyTimeout: 0 })
  const providers: ChainProvider[] = configured.map((p) => ({
    provider: createOpenAiCompatibleProvider({
      name: p.name,
      baseUrl: p.baseUrl,
      apiKey: p.apiKey,
      dialect: p === config.openrouter ? 'openrouter' : 'openai',
      appUrl: config.appUrl,
      appTitle: 'Bagsh',
      dispatcher,
    }),
    models: p.models,
    breaker: new CircuitBreaker({ failureThreshold: config.breakerFailures, cooldownMs: config.breakerCooldownMs }),
  }))
  return new LlmChain(providers, {
    maxTokens: config.maxTokens,
    firstTokenTimeoutMs: config.firstTokenTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    prices: config.prices,
    logger: options.logger,
    onClose: () => dispatcher.close(),
  })
}
