/** Small helpers shared by the standalone bench scripts (`handshakes.ts`, `footprint.ts`). */

/** The value after `--name` on the command line, or `fallback`. */
export const flag = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback
}

/** The lower median (the middle sample; of two middles, the smaller). */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor((s.length - 1) / 2)]!
}
