/**
 * Public list prices, used only when a provider does not report `usage.cost` itself (OpenRouter
 * always does; Gemini's endpoint and self-hosted servers do not). LLM_PRICES overrides or adds
 * entries (see src/config.ts).
 */
export interface ModelPrice {
  /** US dollars per million prompt tokens. */
  inputPerMillion: number
  /** US dollars per million completion tokens (thinking tokens count as output). */
  outputPerMillion: number
}

export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = {
  // Reference B.1 (OpenRouter model page).
  'google/gemini-2.5-flash': { inputPerMillion: 0.3, outputPerMillion: 2.5 },
  // The same model on Gemini's own endpoint, where ids have no `google/` prefix.
  'gemini-2.5-flash': { inputPerMillion: 0.3, outputPerMillion: 2.5 },
  // OpenRouter's listing at launch (also DeepSeek's own list price); providers vary.
  'deepseek/deepseek-chat-v3-0324': { inputPerMillion: 0.27, outputPerMillion: 1.1 },
  // OpenAI's list price.
  'openai/gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 },
}

/** Dollars for one answer, or null when the model has no known price. */
export function estimateCostUsd(
  model: string,
  promptTokens: number,
  completionTokens: number,
  overrides: Readonly<Record<string, ModelPrice>> = {},
): number | null {
  const price = overrides[model] ?? DEFAULT_PRICES[model]
  if (!price) return null
  return (promptTokens * price.inputPerMillion + completionTokens * price.outputPerMillion) / 1_000_000
}
