import type { EmbeddingsConfig } from '../../config.ts'
import type { Embedder } from './embedder.ts'
import { createLocalEmbedder } from './local.ts'
import { createOpenAiCompatibleEmbedder } from './openai-compatible.ts'

export { EmbeddingError, l2normalize, type Embedder } from './embedder.ts'

/** The deployment's embedder: the remote endpoint when EMBEDDINGS_BASE_URL is set, else the built-in one. */
export function createEmbedder(config: EmbeddingsConfig): Embedder {
  if (config.provider === 'openai-compatible') {
    return createOpenAiCompatibleEmbedder({
      baseUrl: config.baseUrl!,
      apiKey: config.apiKey,
      model: config.model,
      dimensions: config.dimensions,
    })
  }
  return createLocalEmbedder()
}
