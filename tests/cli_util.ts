/**
 * Running the figure scripts as a user does, for the tests of the study layer: a subprocess with its exit code
 * and output, the tiny fig7 settings the sweep tests train with, and runs.csv without the columns that differ
 * between otherwise identical sweeps.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCsv } from "../lib/study/csv.ts";
import { TIME_COLUMNS } from "../lib/study/study.ts";

export const FIG7 = new URL("../experiments/fig7.ts", import.meta.url).pathname;

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A script args`; `env` adds to the environment. */
export async function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Ran> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Starts `deno run -A script args` in the background (stderr kept), for tests that kill it. */
export function spawnScript(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** Whether this process may make mount namespaces (`unshare --mount`), which pinning a worker to a GPU needs. */
export const canUnshare: boolean = (() => {
  try {
    return new Deno.Command("unshare", { args: ["--mount", "true"], stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();

/** Lines of stderr that are not the driver's noise. */
export function messageLines(stderr: string): string[] {
  return stderr.trim().split("\n").filter((l) => l.trim() !== "" && !/XDG_RUNTIME_DIR/.test(l));
}

/**
 * Runs `script --scale smoke --out <fresh folder> ...args` for each case and asserts what a bad invocation must
 * give: exit code 2, exactly one message line matching the case's pattern, no stack trace, and nothing written.
 */
export async function assertRejected(script: string, cases: readonly [string[], RegExp][]): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: "mimetic_bad_flags_" });
  for (const [args, pattern] of cases) {
    const r = await runScript(script, ["--scale", "smoke", "--out", out, ...args]);
    assert.equal(r.code, 2, `${args.join(" ")} gave exit code ${r.code}: ${r.stderr}`);
    const lines = messageLines(r.stderr);
    assert.equal(lines.length, 1, `${args.join(" ")}: expected one line, got:\n${r.stderr}`);
    assert.match(lines[0], pattern);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "printed a stack trace");
  }
  assert.deepEqual([...Deno.readDirSync(out)], [], "a rejected invocation wrote something");
  await Deno.remove(out, { recursive: true });
}

/** A tiny fig7 sweep: 2 state sizes × 2 inits × `seeds` seeds, D 16, 1 layer, `steps` steps. */
export function tinyFig7(
  out: string,
  o: { steps?: number; seeds?: number; extra?: string[] } = {},
): string[] {
  return [
    "--scale=smoke",
    `--out=${out}`,
    "--state-sizes=4,8",
    `--seeds=${o.seeds ?? 1}`,
    `--steps=${o.steps ?? 4}`,
    "--batch=2",
    "--d-model=16",
    "--head-dim=8",
    "--layers=1",
    "--context=20",
    "--min-train-len=2",
    "--train-len=4",
    "--eval-lengths=2,4",
    "--eval-samples=4",
    "--log-every=2",
    "--checkpoint-every=2",
    "--vocab=5",
    "--warmup=2",
    ...(o.extra ?? []),
  ];
}

/** runs.csv as rows sorted by run and length, without the time columns (and the worker-dependent ones). */
export function comparableRuns(out: string): Record<string, string>[] {
  return readCsv(join(out, "runs.csv"))
    .map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !TIME_COLUMNS.includes(k))))
    .sort((a, b) => `${a.run_id}/${a.eval_len}`.localeCompare(`${b.run_id}/${b.eval_len}`));
}
