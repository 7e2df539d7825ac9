/**
 * @effect-websocket/autobahn: the scripted Autobahn conformance run (kosoku)
 * and its report gate.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Cases from "./Cases.js"

/**
 * @since 0.1.0
 */
export * as Certificate from "./Certificate.js"

/**
 * @since 0.1.0
 */
export * as Gate from "./Gate.js"

/**
 * @since 0.1.0
 */
export * as GateCli from "./GateCli.js"

/**
 * @since 0.1.0
 */
export * as Kosoku from "./Kosoku.js"

/**
 * @since 0.1.0
 */
export * as Runner from "./Runner.js"

/**
 * @since 0.1.0
 */
export * as TlsTunnel from "./TlsTunnel.js"

/**
 * @since 0.1.0
 */
export * as Testee from "./Testee.js"
