/** The port from `--port N` (or BENCH_PORT). */
export declare const port: number
/** Always 127.0.0.1. */
export declare const host: string
/** Exit when stdin closes (the orchestrator went away) or on SIGTERM. */
export declare const exitWithParent: () => void
