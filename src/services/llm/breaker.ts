export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number
  /** How long an open circuit refuses requests before letting one probe through. */
  cooldownMs: number
  /** Clock in ms; injectable for tests. */
  now?: () => number
}

/**
 * A circuit breaker for one provider. Closed: requests pass, failures are counted. Open: requests
 * are refused until the cool-down has passed. Half-open: exactly one request (the probe) passes;
 * its success closes the circuit, its failure opens it again for another cool-down.
 */
export class CircuitBreaker {
  private readonly threshold: number
  private readonly cooldownMs: number
  private readonly now: () => number
  private failures = 0
  private openedAt: number | null = null
  private probing = false

  constructor(options: BreakerOptions) {
    this.threshold = Math.max(1, options.failureThreshold)
    this.cooldownMs = options.cooldownMs
    this.now = options.now ?? Date.now
  }

  get state(): BreakerState {
    if (this.openedAt === null) return 'closed'
    return this.now() - this.openedAt >= this.cooldownMs ? 'half-open' : 'open'
  }

  /**
   * May a request go to this provider now? 'pass' when closed; in half-open, 'probe' for the one
   * request that tests the provider (it must end with a record… call or `release()`); else null.
   */
  tryAcquire(): 'pass' | 'probe' | null {
    const state = this.state
    if (state === 'closed') return 'pass'
    if (state === 'open' || this.probing) return null
    this.probing = true
    return 'probe'
  }

  /** The provider answered (even with a request-level error): it is alive. */
  recordSuccess(): void {
    this.failures = 0
    this.openedAt = null
    this.probing = false
  }

  recordFailure(): void {
    this.failures++
    if (this.probing || this.failures >= this.threshold) this.trip()
  }

  /** Opens at once: a bad key or no credits will not fix itself on the next request. */
  trip(): void {
    this.openedAt = this.now()
    this.probing = false
  }

  /** The probe ended without a verdict (aborted, or every model cooling down): let another one try. */
  release(): void {
    this.probing = false
  }

  /** Ms until an open circuit lets a probe through; null when not open. */
  retryAfterMs(): number | null {
    if (this.openedAt === null) return null
    return Math.max(0, this.openedAt + this.cooldownMs - this.now())
  }
}
