/**
 * Bad input to a figure script, tried as a new user would: each malformed invocation exits 2 with one line that
 * names the problem, no stack trace, before the GPU is touched (the runs below have WebGPU disabled, so a script
 * that reached for the GPU would say so instead), and nothing is written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FIG7, messageLines, runScript } from "./cli_util.ts";

const tmp = Deno.makeTempDirSync({ prefix: "mimetic_cli_errors_" });
const aFile = join(tmp, "a-file.txt");
Deno.writeTextFileSync(aFile, "not a folder");
const out = join(tmp, "out");
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

// [args, expected message]; every case gets --scale smoke --out <tmp> unless it sets them.
const CASES: [string[], RegExp][] = [
  [["--bogus"], /unknown flag --bogus; --help lists the flags/],
  [["--steps", "abc"], /--steps: expected a number, got "abc"/],
  [["--steps", "-1"], /--steps: expected a value ≥ 1, got -1/],
  [["--steps=-1"], /--steps: expected a value ≥ 1, got -1/],
  [["--steps", "0"], /--steps: expected a value ≥ 1, got 0/],
  [["--steps", "1.5"], /--steps: expected an integer, got 1\.5/],
  [["--steps"], /--steps: expected a value after it/],
  [["--steps", "--batch", "2"], /--steps: expected a value after it/],
  [["--scale", "huge"], /--scale: expected one of smoke, quick, paper, got "huge"/],
  [["--lrs", "1e-3,abc"], /--lrs: expected a number, got "abc"/],
  [["--lrs", "1e-3,1e-3"], /--lrs: 0\.001 is listed twice/],
  [["--lrs", "-1e-3"], /--lrs: expected a value ≥ 0, got -1e-3/],
  [["--lrs", "0"], /lr must be a positive number, got 0/],
  [["--inits", "default,default"], /--inits: default is listed twice/],
  [["--inits", "fancy"], /--inits: expected values from default, mimetic, got "fancy"/],
  [["--inits", ""], /--inits: expected a comma-separated list/],
  [["--state-sizes", "0"], /--state-sizes: expected a value ≥ 1, got 0/],
  [["--state-sizes", "8,8"], /--state-sizes: 8 is listed twice/],
  [["--state-sizes", "8.5"], /--state-sizes: expected an integer, got 8\.5/],
  [["--head-dim", "7", "--d-model", "16"], /headDim 7 must divide the inner width/],
  [["--train-len", "40"], /copy.*(context|maxLen)/],
  [["--min-train-len", "6", "--train-len", "5"], /minLen.*maxLen|min.*≤/i],
  [["--eval-lengths", "0"], /--eval-lengths: expected a value ≥ 1, got 0/],
  [["--eval-lengths", "4,4"], /--eval-lengths: 4 is listed twice/],
  [["--eval-samples", "0"], /--eval-samples: expected a value ≥ 1, got 0/],
  [["--seeds", "0"], /--seeds: expected a value ≥ 1, got 0/],
  [["--warmup", "-5"], /--warmup: expected a value ≥ 0, got -5/],
  [["--weight-decay", "-1"], /--weight-decay: expected a value ≥ 0, got -1/],
  [["--clip", "-1"], /--clip: expected a value ≥ 0, got -1/],
  [["--c", "0"], /mimetic c must be a positive number, got 0/],
  [["--vocab", "1"], /--vocab: expected a value ≥ 2, got 1/],
  [["--batch", "0"], /--batch: expected a value ≥ 1, got 0/],
  [["--layers", "0"], /--layers: expected a value ≥ 1, got 0/],
  [["--d-model", "0"], /--d-model: expected a value ≥ 1, got 0/],
  [["--context", "3"], /--context: expected a value ≥ 4, got 3/],
  [["--beta1", "1"], /--beta1: expected a value ≤ 0\.999999, got 1/],
  [["--eval-seed", "-1"], /--eval-seed: expected a value ≥ 0, got -1/],
  [["--out", ""], /--out: expected a folder, got an empty path/],
  [["--out", aFile], /--out .*a-file\.txt: exists and is not a folder/],
  [["--out", "/proc/mimetic-cannot-write/x"], /--out \/proc\/mimetic-cannot-write\/x: cannot write there/],
  [["--shard", "3/3"], /--shard: expected i\/n with 0 ≤ i < n/],
  [["--shard", "abc"], /--shard: expected i\/n/],
  [["--group-size", "-1"], /--group-size: expected a value ≥ 0, got -1/],
  [["--claim-timeout", "0"], /--claim-timeout: expected a value ≥ 1, got 0/],
  [["extra"], /unexpected argument "extra"/],
  [["--fresh=yes"], /--fresh: takes no value/],
  [["--log-every", "0"], /--log-every: expected a value ≥ 1, got 0/],
  [["--checkpoint-every", "-1"], /--checkpoint-every: expected a value ≥ 0, got -1/],
];

Deno.test(`fig7: ${CASES.length} malformed invocations each exit 2 with one line, before the GPU`, async () => {
  const failures: string[] = [];
  // A few at a time: each is its own deno process.
  for (let i = 0; i < CASES.length; i += 4) {
    await Promise.all(
      CASES.slice(i, i + 4).map(async ([args, pattern]) => {
        const full = [
          ...(args.some((a) => a.startsWith("--scale")) ? [] : ["--scale", "smoke"]),
          ...(args.some((a) => a.startsWith("--out")) ? [] : ["--out", out]),
          ...args,
        ];
        const r = await runScript(FIG7, full, { DENO_WEBGPU_BACKEND: "" });
        const lines = messageLines(r.stderr);
        const what = `fig7 ${args.join(" ")}`;
        if (r.code !== 2) failures.push(`${what}: exit ${r.code}, stderr:\n${r.stderr}`);
        else if (lines.length !== 1) failures.push(`${what}: ${lines.length} lines:\n${r.stderr}`);
        else if (!pattern.test(lines[0])) failures.push(`${what}: "${lines[0]}" does not match ${pattern}`);
        else if (!lines[0].startsWith("fig7: ")) {
          failures.push(`${what}: "${lines[0]}" lacks the script's name`);
        } else if (/\bat .*\.ts:\d+/.test(r.stderr)) failures.push(`${what}: printed a stack trace`);
      }),
    );
  }
  assert.deepEqual(failures, []);
  // Nothing was written: no results folder was filled by any of them.
  const written = (() => {
    try {
      return [...Deno.readDirSync(out)].map((e) => e.name);
    } catch {
      return [];
    }
  })();
  assert.deepEqual(written, []);
});

Deno.test("fig7 --help lists the common and the figure's flags with their values per scale", async () => {
  const r = await runScript(FIG7, ["--help"], { DENO_WEBGPU_BACKEND: "" });
  assert.equal(r.code, 0, r.stderr);
  for (
    const flag of [
      "--scale",
      "--state-sizes",
      "--lrs",
      "--seeds",
      "--fresh",
      "--out",
      "--shard",
      "--worker-id",
    ]
  ) {
    assert.ok(r.stdout.includes(flag), `${flag} missing from --help`);
  }
  assert.match(r.stdout, /state sizes N to sweep \(smoke: 8,32; quick: 8,16,32,64,128,256; paper:/);
});

Deno.test("fig7 without --scale and without a GPU adapter exits 2 naming the missing adapter", async () => {
  const r = await runScript(FIG7, ["--out", out], { DENO_WEBGPU_BACKEND: "" });
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(messageLines(r.stderr).length, 1, r.stderr);
  assert.match(r.stderr, /^fig7: no WebGPU adapter found/);
});
