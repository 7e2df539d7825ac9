// Worker entry: Node 20 does not carry the tsx loader into worker threads, so register it here
// before loading the TypeScript generator.
import { register } from "tsx/esm/api"

register()
await import("./loadgen.ts")
