/**
 * CSV files: {@link writeCsv} (atomic, full precision numbers, RFC 4180 quoting) and {@link readCsv}.
 *
 * npm packages (pinned to major.minor): csv-stringify 6.9, csv-parse 6.2.
 * @module
 */
// Inline npm: specifiers on purpose: mod.ts may be imported from a URL, where deno.json's import map does not apply.
// deno-lint-ignore-file no-import-prefix
import { parse } from "npm:csv-parse@6.2/sync";
import { stringify } from "npm:csv-stringify@6.9/sync";
import { readTextOrNull, writeFileAtomic } from "../core/fs.ts";

/** One CSV cell before writing: `null`/`undefined` become an empty cell, booleans `true`/`false`. */
export type CsvValue = string | number | boolean | null | undefined;

/** One CSV row before writing, keyed by column name. */
export type CsvRow = Record<string, CsvValue>;

const CSV_CAST = {
  boolean: (v: boolean) => (v ? "true" : "false"), // csv-stringify's default writes "1" and ""
  number: (v: number) => String(v), // shortest string that parses back to the same double
};

/** Column names in order of first appearance over all rows. */
export function unionColumns(rows: readonly CsvRow[]): string[] {
  const seen = new Set<string>();
  for (const row of rows) for (const k of Object.keys(row)) seen.add(k);
  return [...seen];
}

function csvText(rows: readonly CsvRow[], columns: readonly string[], header: boolean): string {
  return stringify(rows as CsvRow[], { header, columns: [...columns], cast: CSV_CAST, eof: true });
}

/**
 * Writes rows as a CSV file with a header line, atomically ({@link writeFileAtomic}). Fields with commas, quotes
 * or newlines are quoted (RFC 4180); numbers are written in full precision; `null`/`undefined` as empty cells.
 *
 * @param columns the columns and their order; keys of a row not listed are left out. Default: every key, in order
 *   of first appearance. With no rows and no columns the file is empty.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCsv, writeCsv } from "./csv.ts";
 * const path = `${Deno.makeTempDirSync()}/runs.csv`;
 * writeCsv(path, [{ init: "mimetic, c=8", seed: 0, acc: 0.97, diverged: false }]);
 * assert.equal(Deno.readTextFileSync(path), 'init,seed,acc,diverged\n"mimetic, c=8",0,0.97,false\n');
 * assert.deepEqual(readCsv(path), [{ init: "mimetic, c=8", seed: "0", acc: "0.97", diverged: "false" }]);
 * ```
 */
export function writeCsv(path: string, rows: readonly CsvRow[], columns?: readonly string[]): void {
  const cols = columns ?? unionColumns(rows);
  if (new Set(cols).size !== cols.length) {
    throw new RangeError(`writeCsv: columns must be distinct, got [${cols.join(", ")}]`);
  }
  writeFileAtomic(path, cols.length === 0 ? "" : csvText(rows, cols, true));
}

/**
 * Reads a CSV file with a header line into one object per row, every value a string (empty cells are `""`).
 * Returns `[]` when the file does not exist, so a resumable sweep can start from `readCsv(path)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readCsv, writeCsv } from "./csv.ts";
 * const path = `${Deno.makeTempDirSync()}/r.csv`;
 * assert.deepEqual(readCsv(path), []);
 * writeCsv(path, [{ lr: 1e-3, note: 'say "hi"' }, { lr: 5e-4, note: null }]);
 * assert.deepEqual(readCsv(path), [{ lr: "0.001", note: 'say "hi"' }, { lr: "0.0005", note: "" }]);
 * ```
 */
export function readCsv(path: string): Record<string, string>[] {
  const text = readTextOrNull(path);
  if (text === null || text.trim() === "") return [];
  try {
    return parse(text, { columns: true, bom: true, skip_empty_lines: true }) as Record<string, string>[];
  } catch (err) {
    throw new Error(`readCsv: cannot parse ${path}: ${(err as Error).message}`, { cause: err });
  }
}
