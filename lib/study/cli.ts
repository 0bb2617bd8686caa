/**
 * Command-line plumbing for experiment scripts: typed flags with defaults and help text, and a `main` wrapper
 * that turns bad input (unknown flags, invalid values, invalid configs, no GPU) into a one-line message and exit
 * code 2, without a stack trace.
 * @module
 */
import { parseArgs } from "node:util";
import { GpuUnavailableError } from "../core/runtime.ts";

/** Bad command-line input. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One flag: its kind, default and help. List flags are comma-separated and may not repeat a value. */
export type FlagSpec =
  | { type: "number"; default?: number; help: string; integer?: boolean; min?: number; max?: number }
  | { type: "string"; default?: string; help: string; choices?: readonly string[] }
  | { type: "numbers"; default?: readonly number[]; help: string; integer?: boolean; min?: number }
  | { type: "strings"; default?: readonly string[]; help: string; choices?: readonly string[] }
  | { type: "boolean"; help: string };

type Value<S extends FlagSpec> = S extends { type: "number" } ? number
  : S extends { type: "string" } ? string
  : S extends { type: "numbers" } ? number[]
  : S extends { type: "strings" } ? string[]
  : boolean;

/** Parsed flags: `undefined` where a flag without a default was not given. */
export type Flags<T extends Record<string, FlagSpec>> = { [K in keyof T]: Value<T[K]> | undefined };

/** camelCase → kebab-case, the flag's name on the command line. */
export const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

const show = (v: unknown) => (Array.isArray(v) ? v.join(",") : String(v));

/**
 * The help text of a flag table. `notes` adds text after a flag's help, e.g. its value at each scale.
 */
export function helpText(
  usage: string,
  specs: Record<string, FlagSpec>,
  notes: Record<string, string> = {},
): string {
  const lines = [usage, "", "Flags:"];
  for (const [name, s] of Object.entries(specs)) {
    // An empty string default means "not given" (a flag a figure requires, or an optional path).
    const def = "default" in s && s.default !== undefined && s.default !== ""
      ? ` (default: ${show(s.default)})`
      : "";
    const choices = "choices" in s && s.choices ? ` [${s.choices.join("|")}]` : "";
    lines.push(`  --${kebab(name)}${s.type === "boolean" ? "" : " <" + s.type + ">"}${choices}`);
    lines.push(`      ${s.help}${def}${notes[name] ? ` ${notes[name]}` : ""}`);
  }
  lines.push("  --help", "      Show this help.");
  return lines.join("\n");
}

/**
 * Joins each value flag with the token after it (`--steps -1` → `--steps=-1`), so that a value starting with "-"
 * is read as the value (node's parser would take it for a flag); a value flag followed by another flag or by
 * nothing is an error naming it.
 */
function joinValues(args: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a.startsWith("--") && !a.includes("=") && valueFlags.has(a.slice(2))) {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        throw new UsageError(`${a}: expected a value after it`);
      }
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/**
 * Parses `args` against `specs` (camelCase names become --kebab-case flags). With `defaults: false`, flags that
 * were not given stay `undefined` even when they have a default (so a caller can layer presets between the
 * defaults and what was given).
 * @throws {UsageError} naming the flag, what was expected and what was found.
 * @example
 * ```ts
 * import { parseFlags } from "./cli.ts";
 * const f = parseFlags(["--steps", "10", "--lrs", "1e-3,5e-4"], {
 *   steps: { type: "number", integer: true, min: 1, help: "training steps" },
 *   lrs: { type: "numbers", default: [1e-3], help: "learning rates" },
 * });
 * console.log(f.steps, f.lrs); // 10 [0.001, 0.0005]
 * ```
 */
export function parseFlags<T extends Record<string, FlagSpec>>(
  args: string[],
  specs: T,
  options: { defaults?: boolean } = {},
): Flags<T> & { help: boolean } {
  const applyDefaults = options.defaults ?? true;
  const nodeOptions: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  const valueFlags = new Set<string>();
  for (const [name, s] of Object.entries(specs)) {
    nodeOptions[kebab(name)] = { type: s.type === "boolean" ? "boolean" : "string" };
    if (s.type !== "boolean") valueFlags.add(kebab(name));
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinValues(args, valueFlags),
      options: nodeOptions,
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | boolean | undefined> });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const msg = (e as Error).message.split("\n")[0];
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    if (unknown) throw new UsageError(`unknown flag ${unknown[1]}; --help lists the flags`);
    const noValue = /Option '([^']+)' does not take an argument/.exec(msg);
    if (noValue) throw new UsageError(`${noValue[1]}: takes no value (write ${noValue[1]} alone)`);
    const positional = /Unexpected argument '([^']*)'/.exec(msg);
    if (positional) {
      throw new UsageError(`unexpected argument "${positional[1]}"; flags are written --name value`);
    }
    throw new UsageError(msg.replace(/^TypeError \[\w+\]: /, ""));
  }
  const out: Record<string, unknown> = { help: values.help === true };
  for (const [name, s] of Object.entries(specs)) {
    const flag = `--${kebab(name)}`;
    const raw = values[kebab(name)];
    if (s.type === "boolean") {
      out[name] = raw === true;
      continue;
    }
    if (raw === undefined) {
      out[name] = applyDefaults && "default" in s
        ? (Array.isArray(s.default) ? [...s.default] : s.default)
        : undefined;
      continue;
    }
    const text = String(raw);
    const num = (t: string) => {
      const v = Number(t);
      if (t.trim() === "" || !Number.isFinite(v)) {
        throw new UsageError(`${flag}: expected a number, got "${t}"`);
      }
      if ("integer" in s && s.integer && !Number.isInteger(v)) {
        throw new UsageError(`${flag}: expected an integer, got ${t}`);
      }
      if ("min" in s && s.min !== undefined && v < s.min) {
        throw new UsageError(`${flag}: expected a value ≥ ${s.min}, got ${t}`);
      }
      if ("max" in s && s.max !== undefined && v > s.max) {
        throw new UsageError(`${flag}: expected a value ≤ ${s.max}, got ${t}`);
      }
      return v;
    };
    const noRepeats = <V>(list: V[]) => {
      const seen = new Set<V>();
      for (const v of list) {
        if (seen.has(v)) throw new UsageError(`${flag}: ${v} is listed twice`);
        seen.add(v);
      }
      return list;
    };
    if (s.type === "number") {
      out[name] = num(text);
    } else if (s.type === "string") {
      if (s.choices && !s.choices.includes(text)) {
        throw new UsageError(`${flag}: expected one of ${s.choices.join(", ")}, got "${text}"`);
      }
      out[name] = text;
    } else if (s.type === "numbers") {
      out[name] = noRepeats(text.split(",").map((t) => num(t)));
    } else {
      const list = text.split(",").map((t) => t.trim());
      for (const v of list) {
        if (v === "") throw new UsageError(`${flag}: expected a comma-separated list, got "${text}"`);
        if (s.choices && !s.choices.includes(v)) {
          throw new UsageError(`${flag}: expected values from ${s.choices.join(", ")}, got "${v}"`);
        }
      }
      out[name] = noRepeats(list);
    }
  }
  return out as Flags<T> & { help: boolean };
}

/**
 * Runs an experiment's main function: bad input (UsageError, RangeError from a config check, no GPU) prints
 * `<script>: <message>` on one line and exits with code 2; other errors keep their stack trace and exit 1.
 */
export async function runMain(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError || e instanceof GpuUnavailableError) {
      console.error(`${name}: ${(e as Error).message.split("\n")[0]}`);
      Deno.exit(2);
    }
    throw e;
  }
}
