import { createServer, type Socket } from "node:net"

/** A loopback port nothing listens on (bound once by the OS, then released). */
export const closedPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** A loopback server that accepts connections and never answers: a hung or black-holed endpoint. */
export const silentServer = (): Promise<{ readonly port: number; readonly close: () => void }> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Socket>()
    const server = createServer((s) => {
      sockets.add(s)
      s.on("error", () => undefined)
      s.on("close", () => sockets.delete(s))
    })
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resolve({
        port,
        close: () => {
          for (const s of sockets) s.destroy()
          server.close()
        },
      })
    })
  })
