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

/** One flag: its kind, default and help. `list` flags are comma-separated numbers or strings. */
export type FlagSpec =
  | { type: "number"; default?: number; help: string; integer?: boolean; min?: number }
  | { type: "string"; default?: string; help: string; choices?: readonly string[] }
  | { type: "numbers"; default?: readonly number[]; help: string }
  | { type: "strings"; default?: readonly string[]; help: string; choices?: readonly string[] }
  | { type: "boolean"; help: string };

type Value<S extends FlagSpec> = S extends { type: "number" } ? number
  : S extends { type: "string" } ? string
  : S extends { type: "numbers" } ? number[]
  : S extends { type: "strings" } ? string[]
  : boolean;

/** Parsed flags: `undefined` where a flag without a default was not given. */
export type Flags<T extends Record<string, FlagSpec>> = { [K in keyof T]: Value<T[K]> | undefined };

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** The help text of a flag table. */
export function helpText(usage: string, specs: Record<string, FlagSpec>): string {
  const lines = [usage, "", "Flags:"];
  for (const [name, s] of Object.entries(specs)) {
    const def = "default" in s && s.default !== undefined
      ? ` (default: ${Array.isArray(s.default) ? s.default.join(",") : s.default})`
      : "";
    const choices = "choices" in s && s.choices ? ` [${s.choices.join("|")}]` : "";
    lines.push(`  --${kebab(name)}${s.type === "boolean" ? "" : " <" + s.type + ">"}${choices}`);
    lines.push(`      ${s.help}${def}`);
  }
  lines.push("  --help", "      Show this help.");
  return lines.join("\n");
}

/**
 * Parses `args` against `specs` (camelCase names become --kebab-case flags).
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
): Flags<T> & { help: boolean } {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [name, s] of Object.entries(specs)) {
    options[kebab(name)] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }) as {
      values: Record<string, string | boolean | undefined>;
    });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0].replace(/^TypeError \[\w+\]: /, ""));
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
      out[name] = "default" in s ? (Array.isArray(s.default) ? [...s.default] : s.default) : undefined;
      continue;
    }
    const text = String(raw);
    const num = (t: string) => {
      const v = Number(t);
      if (t.trim() === "" || !Number.isFinite(v)) {
        throw new UsageError(`${flag}: expected a number, got "${t}"`);
      }
      return v;
    };
    if (s.type === "number") {
      const v = num(text);
      if (s.integer && !Number.isInteger(v)) {
        throw new UsageError(`${flag}: expected an integer, got ${text}`);
      }
      if (s.min !== undefined && v < s.min) {
        throw new UsageError(`${flag}: expected a value ≥ ${s.min}, got ${text}`);
      }
      out[name] = v;
    } else if (s.type === "string") {
      if (s.choices && !s.choices.includes(text)) {
        throw new UsageError(`${flag}: expected one of ${s.choices.join(", ")}, got "${text}"`);
      }
      out[name] = text;
    } else if (s.type === "numbers") {
      out[name] = text.split(",").map((t) => num(t));
    } else {
      const list = text.split(",").map((t) => t.trim());
      for (const v of list) {
        if (s.choices && !s.choices.includes(v)) {
          throw new UsageError(`${flag}: expected values from ${s.choices.join(", ")}, got "${v}"`);
        }
      }
      out[name] = list;
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
      console.error(`${name}: ${(e as Error).message}`);
      Deno.exit(2);
    }
    throw e;
  }
}
