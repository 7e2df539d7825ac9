import type { Connection } from "@effect-websocket/protocol/Connection"
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import { Deferred, Effect, Exit, FiberId } from "effect"
import * as Metrics from "../Metrics.js"
import type { CloseInfo } from "../WebSocket.js"
import { NO_TAGS } from "./inbox.js"
import type { Resolved } from "./options.js"

/** What the lifecycle needs from its connection. */
export interface LifecycleHost {
  readonly core: Connection
  readonly options: Resolved
  /** The engine's close-timeout fiber. */
  readonly closeTimeouts: CloseTimeouts
  /** Forks a fiber with the runtime the connection's fiber is forked with; undefined until the connection starts. */
  readonly runFork: ((effect: Effect.Effect<void>) => unknown) | undefined
  /** Sends an owed Close (if any) and cuts the transport. */
  destroy(): void
  /** Interrupts the handler if it is still running (it outlived its transport by the close timeout). */
  interruptHandler(): boolean
  /** Whether the handler is still running. */
  readonly handlerRunning: boolean
}

/**
 * A connection's close bookkeeping: who closed first, how it ended (`CloseInfo`, or the peer's
 * protocol error), the waiters for the end, keepalive and idle deadlines, and its close
 * deadline, armed only while a close is under way: from the first Close (either way), a failure
 * or the transport's end until both the transport is closed and the handler has finished. The
 * engine's close-timeout fiber fires it: it cuts the transport (the peer never finished the
 * closing handshake) or, once the transport is gone, interrupts a handler that is still running.
 */
export class Lifecycle {
  /** Who sent the first Close frame. */
  initiator: "local" | "remote" | undefined = undefined
  /** True when the failure is ours (hard limit, keepalive, handler failure), not the peer's. */
  localFailure = false
  transportEnded = false
  /** How the connection ended, once it has. */
  private ended: Exit.Exit<CloseInfo, ProtocolError> | undefined = undefined
  private closedD: Deferred.Deferred<CloseInfo, ProtocolError> | undefined = undefined
  /** Waiters for the transport's end (no Deferred: an idle `run` keeps one closure). */
  private endWaiters: Array<(exit: Exit.Exit<void, ProtocolError>) => void> | undefined = undefined
  private closeTimer: CloseDeadline | undefined = undefined
  /** The close deadline was armed for the handler's grace (after the transport's end). */
  private graceStarted = false

  // Deadlines, checked by the server's timer fiber (no timer or fiber per idle connection).
  /** Last data message either way (idle timeout). */
  lastActivity = Date.now()
  /** Last bytes from the peer (keepalive: a live peer needs no ping). */
  lastSeen = this.lastActivity
  /** When our keepalive ping went out; 0 when none is outstanding. */
  pingOutstandingSince = 0
  pingSentAt = 0
  private pongWaiters: Array<(e: Effect.Effect<number>) => void> | undefined = undefined

  constructor(private readonly host: LifecycleHost) {}

  /** A close is under way: start the close timeout (once). */
  closing(): void {
    if (this.closeTimer === undefined && !this.transportEnded) this.armTimer()
  }

  private armTimer(): void {
    const fork = this.host.runFork
    // a close before the connection started is armed when it starts (`start` checks `closeExpected`)
    if (fork !== undefined) this.closeTimer = this.host.closeTimeouts.arm(this, fork)
  }

  /** The close deadline passed (called by the close-timeout fiber). */
  timerFired(): void {
    this.closeTimer = undefined
    if (!this.transportEnded) {
      this.host.destroy()
      return
    }
    this.host.interruptHandler()
  }

  /** The handler has finished: if the transport is gone too, the close timer is no longer needed. */
  handlerDone(): void {
    if (this.transportEnded) this.stopTimer()
  }

  private stopTimer(): void {
    const t = this.closeTimer
    if (t !== undefined) {
      this.closeTimer = undefined
      this.host.closeTimeouts.disarm(t)
    }
  }

  /** The transport closed: settle how the connection ended and tell whoever waits. */
  transportClosed(core: Connection): void {
    this.transportEnded = true
    const failure = core.failure
    const outcome = core.closeOutcome()
    const info: CloseInfo = {
      code: outcome.code,
      reason: outcome.reason,
      wasClean: outcome.wasClean,
      initiatedBy: this.initiator ?? (core.closeSent !== undefined ? "local" : "transport")
    }
    Metrics.closeCodes.unsafeUpdate(String(info.code), NO_TAGS)
    const ended = this.ended = failure !== undefined && !this.localFailure ? Exit.fail(failure) : Exit.succeed(info)
    if (this.closedD !== undefined) Deferred.unsafeDone(this.closedD, ended)
    const endWaiters = this.endWaiters
    if (endWaiters !== undefined) {
      this.endWaiters = undefined
      const result = Exit.asVoid(ended)
      for (const w of endWaiters) w(result)
    }
    const pongs = this.pongWaiters
    if (pongs !== undefined) {
      this.pongWaiters = undefined
      for (const w of pongs) w(Effect.interrupt)
    }
    // The handler may still be finishing (logging `closed`, ...): it gets the close timeout.
    this.stopTimer()
    if (this.host.handlerRunning && !this.graceStarted) {
      this.graceStarted = true
      this.armTimer()
    }
  }

  /** Completes with how the connection ended (made on first use). */
  get closedDeferred(): Deferred.Deferred<CloseInfo, ProtocolError> {
    if (this.closedD === undefined) {
      this.closedD = Deferred.unsafeMake(FiberId.none)
      if (this.ended !== undefined) Deferred.unsafeDone(this.closedD, this.ended)
    }
    return this.closedD
  }

  /** Completes when the transport has closed (fails with the peer's protocol error). */
  awaitEnd(): Effect.Effect<void, ProtocolError> {
    const ended = this.ended
    if (ended !== undefined) return Exit.asVoid(ended)
    return Effect.async<void, ProtocolError>((resume) => {
      // a literal of one: an idle connection keeps no spare capacity
      if (this.endWaiters === undefined) this.endWaiters = [resume]
      else this.endWaiters.push(resume)
    })
  }

  /** Completes when the transport has closed, however. */
  get transportGone(): Effect.Effect<void> {
    return Effect.ignore(this.awaitEnd())
  }

  // ------------------------------------------------------------------ ping

  onPong(): void {
    const now = Date.now()
    this.pingOutstandingSince = 0
    const ws = this.pongWaiters
    if (ws === undefined) return
    this.pongWaiters = undefined
    const rtt = now - this.pingSentAt
    Metrics.pingRoundTrip.unsafeUpdate(rtt, NO_TAGS)
    const result = Effect.succeed(rtt)
    for (const w of ws) w(result)
  }

  /** A ping went out: the round trip is timed from now; waits for the next Pong. */
  pinged(): Effect.Effect<number> {
    this.pingSentAt = Date.now()
    if (this.pingOutstandingSince === 0) this.pingOutstandingSince = this.pingSentAt
    return Effect.async<number>((resume) => {
      ;(this.pongWaiters ??= []).push(resume)
    })
  }

  /**
   * Keepalive ping and its timeout, idle timeout (called by the server's timer fiber). Returns
   * what to do: nothing, send a keepalive ping, cut a half-open peer, or close for idleness.
   */
  deadline(now: number): "none" | "ping" | "cut" | "idle" {
    const o = this.host.options
    if (o.keepaliveInterval > 0) {
      if (this.pingOutstandingSince !== 0) {
        // A half-open peer: nothing will reach it, so no Close; the connection ends as 1006.
        if (now - this.pingOutstandingSince >= o.keepaliveTimeout) return "cut"
      } else if (now - this.lastSeen >= o.keepaliveInterval) {
        return "ping"
      }
    }
    if (o.idleTimeout > 0 && now - this.lastActivity >= o.idleTimeout) return "idle"
    return "none"
  }
}

/** A closing connection's deadline in the close-timeout fiber's queue; `life` is cleared when it is no longer needed. */
interface CloseDeadline {
  readonly at: number
  life: Lifecycle | undefined
}

/**
 * An engine's close-timeout fiber. It exists while a close is under way on at least one of its
 * connections and fires each closing connection's deadline in turn. One timeout applies to
 * every connection of an engine, so deadlines fall due in the order they were armed and a
 * FIFO queue is enough: arming is a push, disarming clears the entry's reference to its
 * connection (an ended connection is not held until its deadline). The fiber sleeps until the
 * first armed deadline; when the last armed deadline is disarmed it is woken and ends, so it
 * does not outlive the closes it serves. A close costs no fiber of its own, no interruption and
 * no timer of its own (measured against a fiber per close in the server README).
 */
export class CloseTimeouts {
  private queue: Array<CloseDeadline> = []
  private head = 0
  private running = false
  /** Deadlines armed and neither fired nor disarmed. */
  private armed = 0
  /** Resumes the fiber's sleep early (set while it sleeps). */
  private wake: ((step: Effect.Effect<void>) => void) | undefined = undefined

  constructor(private readonly timeout: number) {}

  /**
   * Arms a deadline `timeout` ms from now for `life`; starts the fiber with `fork` (the
   * connection's runtime) if it is not running.
   */
  arm(life: Lifecycle, fork: (effect: Effect.Effect<void>) => unknown): CloseDeadline {
    const deadline: CloseDeadline = { at: Date.now() + this.timeout, life }
    this.queue.push(deadline)
    this.armed++
    if (!this.running) {
      this.running = true
      fork(this.loop)
    }
    return deadline
  }

  /** The close finished in time: the deadline will not fire; with none left armed, the fiber ends. */
  disarm(deadline: CloseDeadline): void {
    if (deadline.life === undefined) return
    deadline.life = undefined
    if (--this.armed > 0) return
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      // it looks at the queue again: a deadline armed before it runs keeps it going
      wake(this.step)
    }
  }

  private readonly loop: Effect.Effect<void> = Effect.onExit(
    Effect.suspend(() => this.next()),
    () =>
      Effect.sync(() => {
        this.running = false
        this.wake = undefined
      })
  )

  private readonly step: Effect.Effect<void> = Effect.suspend(() => this.next())

  private next(): Effect.Effect<void> {
    const queue = this.queue
    const now = Date.now()
    while (this.head < queue.length) {
      const deadline = queue[this.head]!
      const life = deadline.life
      if (life !== undefined && deadline.at > now) {
        if (this.head >= 1024 && this.head * 2 >= queue.length) {
          this.queue = queue.slice(this.head)
          this.head = 0
        }
        return this.sleep(deadline.at - now)
      }
      this.head++
      if (life !== undefined) {
        deadline.life = undefined
        this.armed--
        life.timerFired()
      }
    }
    this.queue = []
    this.head = 0
    this.running = false
    return Effect.void
  }

  /** Sleeps `ms`, or until `disarm` wakes it; an interruption clears the timer. */
  private sleep(ms: number): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const timer = setTimeout(() => {
        this.wake = undefined
        resume(this.step)
      }, ms)
      this.wake = (step) => {
        clearTimeout(timer)
        resume(step)
      }
      return Effect.sync(() => clearTimeout(timer))
    })
  }
}
