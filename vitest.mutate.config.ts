import { configDefaults } from "vitest/config"
import base from "./vitest.config.js"

// Stryker's runs: the workspace's config (source condition, timeouts, forks) over one package's tests.
const pkg = process.env.MUTATE_PACKAGE ?? "protocol"

// Left out of mutation runs: these run the server in other processes (a packed install, network
// namespaces, Redis fleets), which Stryker's mutant switch does not reach, and each takes 10–40 s;
// a mutant they alone could catch counts as surviving, so leaving them out can only lower a score.
const otherProcesses = ["Package", "Netns", "BroadcastRedisProcesses"].map((name) => `packages/server/test/${name}.test.ts`)

export default {
  ...base,
  test: {
    ...base.test,
    include: [`packages/${pkg}/test/**/*.test.ts`],
    exclude: [...configDefaults.exclude, ...otherProcesses]
  }
}
