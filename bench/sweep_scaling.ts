/**
 * How one sweep scales over the GPUs of a host: the same sweep run into fresh folders on 1, 2, 4 and 8 GPUs through
 * `deno task sweep --gpus` (one worker per GPU, each seeing only its own /dev/nvidiaN), with wall time, runs per
 * hour, speedup, scaling efficiency, each GPU's busy share from nvidia-smi, and whether the results equal the
 * one-GPU sweep's (runs.csv outside the timing and worker columns). Then, optionally, a projection of a figure's
 * `--scale paper` wall time: a probe trains every paper run for `--probe-steps` steps on all the GPUs, and each
 * run's measured train seconds are scaled to the paper's step count (its evaluation counted once, as the paper
 * run does it), summed per GPU-second and divided by the GPUs and the measured efficiency.
 *
 *   deno run -A bench/sweep_scaling.ts                                 # fig7 quick on 1, 2, 4, 8 GPUs
 *   deno run -A bench/sweep_scaling.ts --project fig7,fig3             # and the paper-scale projections
 *   deno run -A bench/sweep_scaling.ts --gpu-counts 1,2 -- experiments/fig1.ts --scale quick
 *
 * Counts above the host's GPUs are left out. Writes `<out>/gpus_<n>/` (each sweep's results, with
 * `gpu_usage.csv`), `<out>/gpus_<n>.log`, `<out>/probe_<figure>/`, `<out>/scaling.csv`, and prints the tables
 * (also in `<out>/scaling.md`). The projection assumes a step costs the same at step 100 as at step 5000 and
 * leaves out compiling (seconds) and any evaluation during training past the probe's steps.
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import {
  type FlagSpec,
  helpText,
  parseFlags,
  readCsv,
  readResults,
  ResultsFolder,
  runMain,
  type RunResult,
  UsageError,
  writeCsv,
} from "../mod.ts";
import { gpuNodes } from "../lib/study/launch.ts";
import { compareRuns } from "../slurm/same_runs.ts";

const FLAGS = {
  "gpu-counts": {
    type: "numbers",
    integer: true,
    min: 1,
    default: [1, 2, 4, 8],
    help: "GPU counts to run the sweep on",
  },
  out: { type: "string", default: "results/scaling", help: "folder for the sweeps, logs and tables" },
  monitor: { type: "number", min: 0.5, default: 2, help: "seconds between nvidia-smi samples" },
  project: { type: "strings", help: "figures to project at --probe-scale, e.g. fig7,fig3 (default: none)" },
  "probe-steps": { type: "number", integer: true, min: 1, default: 100, help: "steps of each probe run" },
  "probe-scale": { type: "string", default: "paper", help: "the scale projected" },
  devices: { type: "string", default: "/dev", help: "folder holding the nvidiaN device nodes (for tests)" },
} as const satisfies Record<string, FlagSpec>;

const LAUNCH = new URL("../lib/study/launch.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;
const DEFAULT_SWEEP = [join(ROOT, "experiments/fig7.ts"), "--scale", "quick"];

/** One sweep's measurements. */
interface Sweep {
  gpus: number;
  wallSeconds: number;
  runs: number;
  /** Σ over runs of (train + eval seconds) / group size: the GPU time the runs took, without idle time. */
  gpuSeconds: number;
  /** Mean utilization.gpu (%) of each GPU used, over the samples taken while the sweep ran. */
  busy: number[];
}

/** Runs `deno task sweep` on the first `n` GPUs; its output goes to `log`. Returns the wall seconds. */
async function sweepOn(
  gpus: number[],
  argv: string[],
  out: string,
  log: string,
  o: { monitor: number; devices: string },
): Promise<number> {
  // Each measurement starts from an empty folder: no run of an earlier measurement counts as done.
  try {
    Deno.removeSync(out, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const file = await Deno.open(log, { write: true, create: true, truncate: true });
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      LAUNCH,
      `--gpus=${gpus.join(",")}`,
      `--monitor=${o.monitor}`,
      `--devices=${o.devices}`,
      "--",
      ...argv,
      `--out=${out}`,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const copy = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await file.write(chunk);
  };
  await Promise.all([copy(child.stdout), copy(child.stderr)]);
  const status = await child.status;
  file.close();
  const seconds = (performance.now() - start) / 1000;
  if (status.code !== 0) {
    const tail = Deno.readTextFileSync(log).trimEnd().split("\n").slice(-3).join(" | ");
    console.error(
      `sweep_scaling: the sweep on ${gpus.length} GPU(s) exited with ${status.code}: ${tail} (log: ${log})`,
    );
    Deno.exit(1);
  }
  return seconds;
}

/** Every result of a folder. */
function results(out: string): RunResult[] {
  return [...readResults(new ResultsFolder(out)).values()];
}

function gpuSecondsOf(runs: readonly RunResult[], trainScale = 1): number {
  return runs.reduce((s, r) => s + (r.trainSeconds * trainScale + r.evalSeconds) / r.groupSize, 0);
}

/** Mean utilization (%) of each listed GPU in a launcher's gpu_usage.csv (timestamp, index, util %, ...). */
function busyShares(path: string, gpus: readonly number[]): number[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch { /* no nvidia-smi: no samples */ }
  const samples = new Map<number, number[]>(gpus.map((g) => [g, []]));
  for (const line of text.split("\n")) {
    const cells = line.split(",").map((c) => c.trim());
    if (cells.length < 3) continue;
    const util = parseFloat(cells[2]);
    samples.get(Number(cells[1]))?.push(util);
  }
  return gpus.map((g) => {
    const s = samples.get(g)!.filter(Number.isFinite);
    return s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
  });
}

/** The `paper:` (or `default:`) value of a figure's `--steps` in its `--help`. */
async function stepsAt(script: string, scale: string): Promise<number> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--help"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const help = new TextDecoder().decode(r.stdout);
  const line = /--steps <number>\n\s+(.*)/.exec(help)?.[1] ?? "";
  const m = new RegExp(`(?:${scale}|default): (\\d+)`).exec(line);
  if (!m) throw new UsageError(`${script}: cannot read the ${scale} step count from its --help`);
  return Number(m[1]);
}

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "–");
const orEmpty = (x: number): number | string => (Number.isFinite(x) ? x : "");
const busy = (x: number | string) => (typeof x === "number" ? `${x.toFixed(0)}%` : "–");
const fmtWall = (s: number) =>
  s < 120 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${(s % 60).toFixed(0)} s`;

if (import.meta.main) {
  await runMain("sweep_scaling", async () => {
    const split = Deno.args.indexOf("--");
    const own = parseFlags(split < 0 ? Deno.args : Deno.args.slice(0, split), FLAGS);
    if (own.help) {
      console.log(helpText("deno run -A bench/sweep_scaling.ts [flags] [-- SCRIPT FLAGS...]", FLAGS));
      return;
    }
    // (every flag below has a default)
    const o = {
      counts: own["gpu-counts"]!,
      out: own.out!,
      monitor: own.monitor!,
      probeSteps: own["probe-steps"]!,
      probeScale: own["probe-scale"]!,
      devices: own.devices!,
    };
    const argv = split < 0 ? DEFAULT_SWEEP : Deno.args.slice(split + 1);
    if (argv.length === 0) {
      throw new UsageError("expected a figure script after --, e.g. -- experiments/fig7.ts");
    }
    if (argv.some((a) => a === "--out" || a.startsWith("--out="))) {
      throw new UsageError("leave --out out of the sweep's flags: each GPU count gets <out>/gpus_<n>");
    }
    const nodes = gpuNodes(o.devices);
    if (nodes.length === 0) {
      throw new UsageError(`no ${o.devices}/nvidiaN device nodes: this bench needs a host with NVIDIA GPUs`);
    }
    const counts = [...new Set(o.counts)].sort((a, b) => a - b);
    const run = counts.filter((n) => n <= nodes.length);
    if (run.length === 0) {
      throw new UsageError(`--gpu-counts ${counts.join(",")}: this host has ${nodes.length} GPU(s)`);
    }
    // The figures to project and their step counts at the projected scale, read before anything runs.
    const projects: { script: string; name: string; steps: number }[] = [];
    for (const f of own.project ?? []) {
      const script = /\.(ts|js)$/.test(f) ? resolve(f) : join(ROOT, `experiments/${f}.ts`);
      try {
        Deno.statSync(script);
      } catch {
        throw new UsageError(`--project: ${script} not found`);
      }
      const name = script.replace(/^.*\//, "").replace(/\.(ts|js)$/, "");
      projects.push({ script, name, steps: await stepsAt(script, o.probeScale) });
    }
    const outRoot = isAbsolute(o.out) ? o.out : resolve(o.out);
    try {
      Deno.mkdirSync(outRoot, { recursive: true });
      Deno.writeTextFileSync(join(outRoot, ".write_test"), "");
      Deno.removeSync(join(outRoot, ".write_test"));
    } catch (e) {
      throw new UsageError(`--out ${o.out}: cannot write there (${(e as Error).message.split(":")[0]})`);
    }

    const skipped = counts.filter((n) => n > nodes.length);
    if (skipped.length) {
      console.error(`sweep_scaling: this host has ${nodes.length} GPU(s); leaving out ${skipped.join(", ")}`);
    }
    const sweeps: Sweep[] = [];
    for (const n of run) {
      const gpus = nodes.slice(0, n);
      const out = join(outRoot, `gpus_${n}`);
      console.error(`sweep_scaling: ${argv.join(" ")} on ${n} GPU(s) (${gpus.join(",")}) into ${out}`);
      const wallSeconds = await sweepOn(gpus, argv, out, join(outRoot, `gpus_${n}.log`), o);
      const rs = results(out);
      sweeps.push({
        gpus: n,
        wallSeconds,
        runs: rs.length,
        gpuSeconds: gpuSecondsOf(rs),
        busy: busyShares(join(out, "gpu_usage.csv"), gpus),
      });
      console.error(`sweep_scaling: ${n} GPU(s): ${rs.length} runs in ${fmtWall(wallSeconds)}`);
    }

    const base = sweeps[0];
    const baseRows = readCsv(join(outRoot, `gpus_${base.gpus}`, "runs.csv"));
    const rows = sweeps.map((s) => {
      const speedup = base.wallSeconds / s.wallSeconds;
      const problems = s === base
        ? []
        : compareRuns(baseRows, readCsv(join(outRoot, `gpus_${s.gpus}`, "runs.csv")), new Set());
      return {
        gpus: s.gpus,
        wall_seconds: s.wallSeconds,
        runs: s.runs,
        runs_per_hour: (3600 * s.runs) / s.wallSeconds,
        speedup,
        efficiency: (speedup * base.gpus) / s.gpus,
        gpu_seconds: s.gpuSeconds,
        // (empty without nvidia-smi samples)
        mean_busy_percent: orEmpty(s.busy.reduce((a, b) => a + b, 0) / s.busy.length),
        least_busy_percent: orEmpty(Math.min(...s.busy)),
        same_results_as_base: problems.length === 0,
        differences: problems.length,
      };
    });
    writeCsv(join(outRoot, "scaling.csv"), rows);
    const lines = [
      `Sweep: \`${argv.join(" ")}\`; results of each count compared with the ${base.gpus}-GPU sweep's.`,
      "",
      "| GPUs | wall | runs | runs / hour | speedup | efficiency | GPU busy (mean, least) | same results |",
      "|---|---|---|---|---|---|---|---|",
      ...rows.map((r) =>
        `| ${r.gpus} | ${fmtWall(r.wall_seconds)} | ${r.runs} | ${fmt(r.runs_per_hour, 0)} | ${
          fmt(r.speedup)
        }× | ${fmt(100 * r.efficiency, 0)}% | ${busy(r.mean_busy_percent)}, ${busy(r.least_busy_percent)} | ${
          r.same_results_as_base ? "yes" : `no (${r.differences} differences)`
        } |`
      ),
    ];

    const top = rows[rows.length - 1];
    for (const { script, name, steps } of projects) {
      const probe = join(outRoot, `probe_${name}`);
      const probeArgv = [script, `--scale=${o.probeScale}`, `--steps=${o.probeSteps}`];
      console.error(`sweep_scaling: probe of ${name} at ${o.probeScale} scale, ${o.probeSteps} steps`);
      const gpus = nodes.slice(0, top.gpus);
      const wall = await sweepOn(gpus, probeArgv, probe, join(outRoot, `probe_${name}.log`), o);
      const rs = results(probe);
      const gpuSeconds = gpuSecondsOf(rs, steps / o.probeSteps);
      const projected = gpuSeconds / (top.gpus * top.efficiency);
      lines.push(
        "",
        `Projection, ${name} --scale ${o.probeScale}: ${rs.length} runs × ${steps} steps. The probe (every run ` +
          `for ${o.probeSteps} steps, ${top.gpus} GPU(s)) took ${fmtWall(wall)}; scaled to ${steps} steps ` +
          `the runs need ${fmt(gpuSeconds / 3600)} GPU-hours, so about **${
            fmtWall(projected)
          }** on ${top.gpus} ` +
          `GPU(s) at the measured ${fmt(100 * top.efficiency, 0)}% efficiency (${fmt(projected / 3600)} h).`,
      );
    }
    const md = lines.join("\n") + "\n";
    Deno.writeTextFileSync(join(outRoot, "scaling.md"), md);
    console.log(md);
  });
}
