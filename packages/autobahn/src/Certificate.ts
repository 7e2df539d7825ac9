/**
 * A throwaway self-signed certificate for the wss run, made at run time: with
 * the `openssl` CLI when there is one, else with the `selfsigned` npm package
 * (pure JavaScript, so a machine with only Node works too).
 *
 * The certificate names 127.0.0.1 and localhost and is its own CA: the client
 * side of the run trusts exactly this certificate and nothing else.
 *
 * @since 0.1.0
 */
import { execFile } from "node:child_process"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Data, Effect } from "effect"

/**
 * @since 0.1.0
 * @category errors
 */
export class CertificateError extends Data.TaggedError("CertificateError")<{
  readonly detail: string
}> {
  override get message(): string {
    return `could not make a test certificate: ${this.detail}`
  }
}

/**
 * Which tool made the certificate.
 *
 * @since 0.1.0
 * @category models
 */
export type Backend = "openssl" | "selfsigned"

/**
 * The files of a generated certificate, and its PEM text for the client to trust.
 *
 * @since 0.1.0
 * @category models
 */
export interface Certificate {
  readonly certFile: string
  readonly keyFile: string
  readonly certPem: string
  readonly keyPem: string
  readonly backend: Backend
}

const SUBJECT_CN = "127.0.0.1"

const hasOpenssl: Effect.Effect<boolean> = Effect.async<boolean>((resume) => {
  const child = execFile("openssl", ["version"], { timeout: 10_000 }, (error) => resume(Effect.succeed(error === null)))
  return Effect.sync(() => child.kill())
})

const viaOpenssl = (certFile: string, keyFile: string): Effect.Effect<void, CertificateError> =>
  Effect.async<void, CertificateError>((resume) => {
    const child = execFile(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-sha256",
        "-days",
        "2",
        "-subj",
        `/CN=${SUBJECT_CN}`,
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        keyFile,
        "-out",
        certFile
      ],
      { timeout: 60_000 },
      (error, _stdout, stderr) =>
        resume(
          error === null
            ? Effect.void
            : Effect.fail(new CertificateError({ detail: `openssl: ${error.message} ${String(stderr).trim()}` }))
        )
    )
    return Effect.sync(() => child.kill())
  })

const viaSelfsigned = (certFile: string, keyFile: string): Effect.Effect<void, CertificateError> =>
  Effect.tryPromise({
    try: async () => {
      const selfsigned = await import("selfsigned")
      const now = new Date()
      const pems = await selfsigned.generate([{ name: "commonName", value: SUBJECT_CN }], {
        keyType: "ec",
        curve: "P-256",
        algorithm: "sha256",
        notBeforeDate: new Date(now.getTime() - 60_000),
        notAfterDate: new Date(now.getTime() + 2 * 24 * 3600_000),
        extensions: [
          { name: "basicConstraints", cA: true },
          { name: "keyUsage", digitalSignature: true, keyCertSign: true },
          { name: "extKeyUsage", serverAuth: true },
          { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] }
        ]
      })
      await writeFile(keyFile, pems.private, { mode: 0o600 })
      await writeFile(certFile, pems.cert)
    },
    catch: (e) => new CertificateError({ detail: `selfsigned: ${String(e)}` })
  })

/**
 * Writes `cert.pem` and `key.pem` into `dir` (which must exist). `backend`
 * forces one tool; by default openssl is used when it runs, else selfsigned.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generate = (
  dir: string,
  options: { readonly backend?: Backend | undefined } = {}
): Effect.Effect<Certificate, CertificateError> =>
  Effect.gen(function*() {
    const certFile = join(dir, "cert.pem")
    const keyFile = join(dir, "key.pem")
    const backend: Backend = options.backend ?? ((yield* hasOpenssl) ? "openssl" : "selfsigned")
    yield* backend === "openssl" ? viaOpenssl(certFile, keyFile) : viaSelfsigned(certFile, keyFile)
    const [certPem, keyPem] = yield* Effect.tryPromise({
      try: () => Promise.all([readFile(certFile, "utf8"), readFile(keyFile, "utf8")]),
      catch: (e) => new CertificateError({ detail: `reading the generated files: ${String(e)}` })
    })
    return { certFile, keyFile, certPem, keyPem, backend }
  })
