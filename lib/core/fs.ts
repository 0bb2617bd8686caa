/**
 * Atomic files: {@link writeFileAtomic} (tmp file + fsync + rename, so a crash or a concurrent reader never sees
 * half a file), {@link writeJsonAtomic}, {@link readJson}, and {@link createExclusive} (create-if-absent, the
 * primitive under claims of sweeps shared by many processes). Synchronous on purpose: callers write a file, then
 * go on, and a file written is a file on disk.
 * @module
 */
import { dirname } from "node:path";

/**
 * Writes `data` to `path` atomically: to `path.tmp-<pid>-<rand>` in the same folder, flushed to disk, then renamed
 * over `path` (rename is atomic on POSIX), so readers see the old file or the new one, never a partial one.
 * Creates missing parent folders. The tmp file is removed if the write fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeFileAtomic } from "./fs.ts";
 * const dir = Deno.makeTempDirSync();
 * writeFileAtomic(`${dir}/a/b/note.txt`, "first");
 * writeFileAtomic(`${dir}/a/b/note.txt`, "second");
 * assert.equal(Deno.readTextFileSync(`${dir}/a/b/note.txt`), "second");
 * assert.deepEqual([...Deno.readDirSync(`${dir}/a/b`)].map((e) => e.name), ["note.txt"]);
 * ```
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  // Not the project's keyed RNG on purpose: this only has to differ between concurrent writers.
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16).padStart(8, "0");
  const tmp = `${path}.tmp-${Deno.pid}-${rand}`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = Deno.openSync(tmp, { write: true, createNew: true });
    try {
      let off = 0;
      while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
      file.syncSync(); // the rename must not land before the data does
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created, or already renamed */ }
    throw err;
  }
}

/** A file's text, or null when it does not exist. */
export function readTextOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * Writes `value` as pretty-printed JSON (2-space indent, trailing newline) atomically ({@link writeFileAtomic}).
 * Note JSON turns NaN and ±Infinity into `null`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJson, writeJsonAtomic } from "./fs.ts";
 * const path = `${Deno.makeTempDirSync()}/config.json`;
 * writeJsonAtomic(path, { layers: 2, lr: [1e-3, 5e-4] });
 * assert.deepEqual(readJson(path), { layers: 2, lr: [0.001, 0.0005] });
 * ```
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) throw new RangeError(`writeJsonAtomic: value for ${path} is not JSON-serialisable`);
  writeFileAtomic(path, text + "\n");
}

/**
 * Reads and parses a JSON file. When the file does not exist, returns `fallback` if one is given, else throws
 * `Deno.errors.NotFound`. The result is not validated: `T` is the caller's promise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJson } from "./fs.ts";
 * const state = readJson<{ step: number }>(`${Deno.makeTempDirSync()}/state.json`, { step: 0 });
 * assert.equal(state.step, 0);
 * ```
 */
export function readJson<T = unknown>(path: string, fallback?: T): T {
  const text = readTextOrNull(path);
  if (text === null) {
    if (fallback !== undefined) return fallback;
    throw new Deno.errors.NotFound(`readJson: no such file: ${path}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`readJson: cannot parse ${path}: ${(err as Error).message}`, { cause: err });
  }
}
