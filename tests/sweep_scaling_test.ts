/**
 * bench/sweep_scaling.ts, the multi-GPU scaling bench, end to end on stand-in device nodes (each worker sees only
 * its own node, and all of them run on this machine's one adapter): a tiny fig7 sweep on 1 and 2 "GPUs" gives the
 * same runs.csv, the table counts every run, a probe projects the smoke scale's full step count, and bad input
 * gives one line with exit 2 before anything runs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { canUnshare, FIG7, messageLines, runScript, tinyFig7 } from "./cli_util.ts";
import { readCsv } from "../lib/study/csv.ts";

const BENCH = new URL("../bench/sweep_scaling.ts", import.meta.url).pathname;
const tmp = Deno.makeTempDirSync({ prefix: "mimetic_scaling_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

function standInGpus(n: number): string {
  const dev = Deno.makeTempDirSync({ dir: tmp, prefix: "dev_" });
  for (let i = 0; i < n; i++) Deno.writeTextFileSync(join(dev, `nvidia${i}`), `gpu${i}`);
  return dev;
}

/** tinyFig7's flags without --out (the bench gives each GPU count its own folder). */
const sweepFlags = tinyFig7("unused", { seeds: 2 }).filter((a) => !a.startsWith("--out="));

Deno.test({
  name:
    "sweep_scaling: 1 and 2 stand-in GPUs give the same runs; the table and a probe's projection are written",
  ignore: noGpu || !canUnshare,
  async fn() {
    const dev = standInGpus(2), out = join(tmp, "scaling");
    const r = await runScript(BENCH, [
      `--devices=${dev}`,
      "--gpu-counts=1,2,4",
      "--monitor=0.5",
      `--out=${out}`,
      "--project=fig7",
      "--probe-scale=smoke",
      "--probe-steps=3",
      "--",
      FIG7,
      ...sweepFlags,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /this host has 2 GPU\(s\); leaving out 4/);
    const rows = readCsv(join(out, "scaling.csv"));
    assert.deepEqual(rows.map((row) => row.gpus), ["1", "2"]);
    for (const row of rows) {
      assert.equal(row.runs, "8"); // 2 state sizes × 2 inits × 2 seeds
      assert.equal(row.same_results_as_base, "true");
      assert.ok(Number(row.wall_seconds) > 0 && Number(row.gpu_seconds) > 0, JSON.stringify(row));
      assert.equal(row.mean_busy_percent, ""); // no nvidia-smi here
    }
    assert.equal(rows[0].efficiency, "1");
    // Each sweep's own results, with both workers' claims used on 2 GPUs.
    const workers = new Set(
      readCsv(join(out, "gpus_2", "runs.csv")).map((row) => row.worker),
    );
    assert.ok([...workers].every((w) => /^gpu[01]$/.test(w)), [...workers].join(","));
    // The probe trains fig7's smoke grid (4 runs) for 3 steps and projects its 60.
    assert.match(r.stdout, /\| 2 \| .* \| 8 \| .* \| yes \|/);
    assert.match(
      r.stdout,
      /Projection, fig7 --scale smoke: 4 runs × 60 steps\. The probe \(every run for 3 steps/,
    );
    assert.equal(Deno.readTextFileSync(join(out, "scaling.md")).trim(), r.stdout.trim());
  },
});

Deno.test({
  name: "sweep_scaling: bad input gives one line and exit 2 before any sweep runs",
  ignore: !canUnshare,
  async fn() {
    const dev = standInGpus(1), empty = standInGpus(0), out = join(tmp, "never");
    const cases: [string[], RegExp][] = [
      [
        [`--devices=${empty}`, `--out=${out}`],
        /no .*nvidiaN device nodes: this bench needs a host with NVIDIA GPUs/,
      ],
      [[`--devices=${dev}`, "--gpu-counts=0", `--out=${out}`], /--gpu-counts/],
      [[`--devices=${dev}`, "--gpu-counts=2", `--out=${out}`], /--gpu-counts 2: this host has 1 GPU/],
      [[`--devices=${dev}`, `--out=${out}`, "--project=fig99"], /--project: .*fig99\.ts not found/],
      [[`--devices=${dev}`, `--out=${out}`, "--", FIG7, "--out=x"], /leave --out out of the sweep's flags/],
      [[`--devices=${dev}`, "--bogus"], /bogus/],
    ];
    for (const [args, expect] of cases) {
      const r = await runScript(BENCH, args);
      const lines = messageLines(r.stderr);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
      assert.equal(lines.length, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(lines[0], expect);
    }
    assert.throws(() => Deno.statSync(out), Deno.errors.NotFound);
  },
});
