import base from "./vitest.config.js"

// Stryker's runs: the workspace's config (source condition, timeouts, forks) over one package's tests.
const pkg = process.env.MUTATE_PACKAGE ?? "protocol"

export default { ...base, test: { ...base.test, include: [`packages/${pkg}/test/**/*.test.ts`] } }
