/**
 * The embedded BlobStore: key "a/b/c" is the file `dir/a/b/c`. One process owns the directory.
 * `put` writes a temp file, fsyncs it, renames it over the key and fsyncs the directory, so a reader (or a restart
 * after a crash) sees the old object or the new one, never a part. Temp names contain '~', which no key may, so
 * `list` never shows them. A key cannot be both an object and a "folder" of others ("a" and "a/b"): S3 allows it,
 * a file system does not, and `put` fails with BlobStoreError instead.
 */
import { mkdir, open, readdir, readFile, rename, rmdir, unlink } from "node:fs/promises"
import { dirname, join, relative, sep } from "node:path"
import { Effect, Layer } from "effect"
import { BlobStore, BlobStoreError, type BlobStoreService } from "../ports/BlobStore.ts"
import { checkKey, checkPrefix } from "./blobKeys.ts"

const code = (e: unknown): unknown => (e as { code?: unknown } | null)?.code

const fsyncPath = async (path: string): Promise<void> => {
  const fh = await open(path, "r")
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

let tempCounter = 0

const writeAtomically = async (root: string, target: string, bytes: Uint8Array): Promise<void> => {
  const parent = dirname(target)
  // A concurrent delete may remove the (empty) parent between mkdir and open: try again.
  for (let attempt = 1; ; attempt++) {
    const created = await mkdir(parent, { recursive: true })
    const temp = `${target}~${process.pid}~${tempCounter++}`
    try {
      const fh = await open(temp, "wx")
      try {
        await fh.writeFile(bytes)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(temp, target)
    } catch (e) {
      await unlink(temp).catch(() => undefined)
      if (code(e) === "ENOENT" && attempt < 5) continue
      throw e
    }
    // New directories are durable only once their own parents are synced too.
    const dirs = [parent]
    if (created !== undefined) {
      for (let d = parent; d !== dirname(created); d = dirname(d)) dirs.push(dirname(d))
    }
    await Promise.all([...new Set(dirs)].filter((d) => !relative(root, d).startsWith("..")).map(fsyncPath))
    return
  }
}

/** Every file under `base`, as '/'-joined keys relative to `root`. */
const walk = async (root: string, base: string, out: Array<string>): Promise<void> => {
  let entries
  try {
    entries = await readdir(base, { withFileTypes: true })
  } catch (e) {
    if (code(e) === "ENOENT" || code(e) === "ENOTDIR") return
    throw e
  }
  for (const entry of entries) {
    const path = join(base, entry.name)
    if (entry.isDirectory()) await walk(root, path, out)
    else if (entry.isFile()) out.push(relative(root, path).split(sep).join("/"))
  }
}

/** Deletes the temp files of puts cut short by a crash. */
const removeTempFiles = async (root: string): Promise<void> => {
  const files: Array<string> = []
  await walk(root, root, files)
  await Promise.all(files.filter((k) => k.includes("~")).map((k) => unlink(join(root, k)).catch(() => undefined)))
}

/** `readOnly`: a reader beside a running writer; it must not remove the writer's temp files. */
export const makeDirectoryBlobStore = (dir: string, options: { readonly readOnly?: boolean } = {}): Effect.Effect<BlobStoreService, BlobStoreError> =>
  Effect.gen(function* () {
    yield* Effect.tryPromise({
      try: async () => {
        await mkdir(dir, { recursive: true })
        if (!options.readOnly) await removeTempFiles(dir)
      },
      catch: (cause) => new BlobStoreError({ message: `cannot open blob directory ${dir}: ${String(cause)}`, cause }),
    })

    const withKey = <A>(key: string, what: string, f: (path: string) => Promise<A>): Effect.Effect<A, BlobStoreError> =>
      Effect.suspend(() => {
        const invalid = checkKey(key)
        if (invalid) return Effect.fail(invalid)
        return Effect.tryPromise({
          try: () => f(join(dir, ...key.split("/"))),
          catch: (cause) => new BlobStoreError({ message: `${what} ${key} in ${dir}: ${String(cause)}`, key, cause }),
        })
      })

    const get = (key: string) =>
      withKey(key, "cannot read", async (path): Promise<Uint8Array | undefined> => {
        try {
          const buf = await readFile(path)
          return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
        } catch (e) {
          // A missing file, or a "folder" of other keys: either way no object has this key.
          if (code(e) === "ENOENT" || code(e) === "ENOTDIR" || code(e) === "EISDIR") return undefined
          throw e
        }
      })

    const remove = (key: string) =>
      withKey(key, "cannot delete", async (path) => {
        try {
          await unlink(path)
        } catch (e) {
          if (code(e) === "ENOENT" || code(e) === "ENOTDIR" || code(e) === "EISDIR" || code(e) === "EPERM") return
          throw e
        }
        try {
          await fsyncPath(dirname(path))
        } catch (e) {
          // A concurrent delete of the folder's last other key removed the folder, and with it this entry.
          if (code(e) !== "ENOENT") throw e
        }
        // Empty folders would block a later put of a key with that name.
        for (let d = dirname(path); relative(dir, d) !== "" && !relative(dir, d).startsWith(".."); d = dirname(d)) {
          try {
            await rmdir(d)
          } catch {
            break
          }
        }
      })

    const list = (prefix: string): Effect.Effect<ReadonlyArray<string>, BlobStoreError> =>
      Effect.suspend(() => {
        const invalid = checkPrefix(prefix)
        if (invalid) return Effect.fail(invalid)
        // Only the folder the prefix points into can hold matches.
        const folder = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : ""
        return Effect.tryPromise({
          try: async () => {
            const keys: Array<string> = []
            await walk(dir, join(dir, ...folder.split("/").filter((s) => s !== "")), keys)
            return keys
              .filter((k) => k.startsWith(prefix) && !k.includes("~"))
              .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
          },
          catch: (cause) => new BlobStoreError({ message: `cannot list ${prefix} in ${dir}: ${String(cause)}`, key: prefix, cause }),
        })
      })

    return {
      put: (key, bytes) => withKey(key, "cannot write", (path) => writeAtomically(dir, path, bytes)),
      get,
      list,
      delete: remove,
    } satisfies BlobStoreService
  })

export const DirectoryBlobStore = {
  /** The BlobStore port backed by files under `dir` (created if missing). */
  layer: (dir: string, options: { readonly readOnly?: boolean } = {}): Layer.Layer<BlobStore, BlobStoreError> => Layer.effect(BlobStore, makeDirectoryBlobStore(dir, options)),
  make: makeDirectoryBlobStore,
} as const
