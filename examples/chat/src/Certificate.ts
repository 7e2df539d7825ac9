/**
 * A self-signed certificate for localhost and 127.0.0.1 (two days), made at start with the
 * `selfsigned` package: enough for a browser on this machine to speak HTTP/2 to the chat
 * once the certificate is accepted.
 */
import selfsigned from "selfsigned"

export const localhostCertificate = async (): Promise<{ readonly key: string; readonly cert: string }> => {
  const now = Date.now()
  const pems = await selfsigned.generate([{ name: "commonName", value: "localhost" }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 2 * 24 * 3600_000),
    extensions: [
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 2, value: "localhost" }, { type: 7, ip: "127.0.0.1" }] }
    ]
  })
  return { key: pems.private, cert: pems.cert }
}
