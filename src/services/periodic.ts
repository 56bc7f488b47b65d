/**
 * Background rounds of an app instance (the answer worker, housekeeping): a timer every
 * `intervalMs` plus up to `jitterMs` (instances started together do not run in lockstep), one
 * round at a time, and a stop that waits for the round in progress. The timer never keeps a
 * process alive.
 */
export class PeriodicRounds {
  private readonly intervalMs: number
  private readonly jitterMs: number
  private readonly onTimer: () => unknown
  private timer: NodeJS.Timeout | null = null
  private current: Promise<unknown> | null = null

  /** `onTimer` is what the timer calls: usually the owner's own round method (which uses `run`). */
  constructor(options: { intervalMs: number; jitterMs: number }, onTimer: () => unknown) {
    this.intervalMs = options.intervalMs
    this.jitterMs = options.jitterMs
    this.onTimer = onTimer
  }

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => void this.onTimer(), this.intervalMs + Math.floor(Math.random() * this.jitterMs))
    this.timer.unref()
  }

  /** Stops the timer and waits for the round in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.current
  }

  /** Runs `round` unless one is already running (then resolves to `busy` at once). */
  async run<T>(round: () => Promise<T>, busy: T): Promise<T> {
    if (this.current) return busy
    const running = round()
    this.current = running
    try {
      return await running
    } finally {
      this.current = null
    }
  }
}
