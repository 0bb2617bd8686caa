/**
 * One sweep over every GPU of a host: one worker process per GPU, all on one results folder (the workers share it
 * through claims; see `results.ts`), no scheduler of our own.
 *
 *   deno task sweep --gpus all -- experiments/fig7.ts --scale quick --out results/fig7
 *   deno task sweep --workers 2 -- experiments/fig7.ts --scale smoke        (no GPUs to pin: N plain workers)
 *
 * Deno's WebGPU takes the first GPU it can open on an NVIDIA host whatever `CUDA_VISIBLE_DEVICES` says (measured on
 * a 2-GPU H200 host), so each worker runs in its own mount namespace (`unshare -m`) where every other
 * `/dev/nvidiaN` node is covered by a bind mount of `/dev/null`: the worker can open only its own GPU. That is what
 * Slurm's `ConstrainDevices=yes` does for each task of a job array (see `slurm/`). It needs root (or user
 * namespaces, tried with `--map-root-user` otherwise).
 *
 * The script's flags are checked first (`--list`: no GPU), so bad input gives its one line once, not once per worker;
 * the script's `--fresh` is applied then, once, and not given to the workers.
 * Each worker's output lines are prefixed with its name; `--monitor S` samples `nvidia-smi` every S seconds into
 * `<out>/gpu_usage.csv`. The exit status is the workers' worst.
 * @module
 */
import { basename, join } from "node:path";
import { type FlagSpec, parseFlags, runMain, UsageError } from "./cli.ts";

const FLAGS = {
  gpus: {
    type: "string",
    help: "GPUs to pin one worker each to: `all` (every /dev/nvidiaN) or a list like 0,1,3",
  },
  workers: {
    type: "number",
    integer: true,
    min: 1,
    help: "without --gpus: this many plain workers sharing whatever adapter there is",
  },
  monitor: {
    type: "number",
    min: 0,
    default: 0,
    help: "sample nvidia-smi every this many seconds into <out>/gpu_usage.csv (0: off)",
  },
  devices: {
    type: "string",
    default: "/dev",
    help: "folder holding the nvidiaN device nodes (for tests)",
  },
} as const satisfies Record<string, FlagSpec>;

/** The GPU indices with a device node `<devices>/nvidiaN`. */
export function gpuNodes(devices = "/dev"): number[] {
  const out: number[] = [];
  try {
    for (const e of Deno.readDirSync(devices)) {
      const m = /^nvidia(\d+)$/.exec(e.name);
      if (m) out.push(Number(m[1]));
    }
  } catch { /* no such folder: no GPUs */ }
  return out.sort((a, b) => a - b);
}

/**
 * The command that runs `argv` with only GPU `gpu` of `all` visible: in a new mount namespace, the other
 * `<devices>/nvidiaN` covered by `/dev/null`.
 */
export function pinnedCommand(
  gpu: number,
  all: readonly number[],
  argv: readonly string[],
  devices = "/dev",
): string[] {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const hide = all.filter((g) => g !== gpu).map((g) =>
    `mount --bind /dev/null ${quote(join(devices, `nvidia${g}`))}`
  );
  const script = [...hide, `exec ${argv.map(quote).join(" ")}`].join(" && ");
  const root = Deno.uid?.() === 0;
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    ...(root ? [] : ["--map-root-user"]),
    "sh",
    "-c",
    script,
  ];
}

/** Copies a stream to stderr line by line, each line prefixed with `[name] `. */
async function prefixLines(stream: ReadableStream<Uint8Array>, name: string): Promise<void> {
  const enc = new TextEncoder();
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const text = rest + chunk;
    const lines = text.split(/\r?\n|\r/);
    rest = lines.pop() ?? "";
    for (const l of lines) Deno.stderr.writeSync(enc.encode(`[${name}] ${l}\n`));
  }
  if (rest) Deno.stderr.writeSync(enc.encode(`[${name}] ${rest}\n`));
}

/** The `--out` of a script's arguments, if given. */
function outOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out") return args[i + 1];
    if (args[i].startsWith("--out=")) return args[i].slice(6);
  }
  return undefined;
}

/** Samples nvidia-smi into a CSV until `stop` resolves. */
async function monitorGpus(path: string, everySeconds: number, stop: Promise<unknown>): Promise<void> {
  let done = false;
  stop.then(() => (done = true));
  const file = await Deno.open(path, { create: true, append: true });
  try {
    while (!done) {
      try {
        const r = await new Deno.Command("nvidia-smi", {
          args: [
            "--query-gpu=timestamp,index,utilization.gpu,memory.used,power.draw",
            "--format=csv,noheader",
          ],
          stdout: "piped",
          stderr: "null",
        }).output();
        if (r.success) await file.write(r.stdout);
      } catch {
        return; // no nvidia-smi here
      }
      await Promise.race([new Promise((r) => setTimeout(r, everySeconds * 1000)), stop]);
    }
  } finally {
    file.close();
  }
}

/**
 * Starts the workers and waits for them. `argv` is the figure script and its flags (the part after `--`).
 * @returns the workers' worst exit status.
 */
export async function launch(args: string[]): Promise<number> {
  const split = args.indexOf("--");
  if (split < 0 || split === args.length - 1) {
    throw new UsageError(
      "expected `-- SCRIPT [FLAGS...]` after the launcher's flags, e.g. -- experiments/fig7.ts",
    );
  }
  const own = parseFlags(args.slice(0, split), FLAGS);
  const [script, ...scriptArgs] = args.slice(split + 1);
  if (own.help) {
    console.log("deno task sweep [--gpus all|0,1,..] [--workers N] [--monitor S] -- SCRIPT [FLAGS...]");
    return 0;
  }
  if (own.gpus !== undefined && own.workers !== undefined) {
    throw new UsageError("--gpus and --workers: give one (--gpus pins one worker to each GPU)");
  }
  let gpus: number[] = [];
  if (own.gpus !== undefined) {
    const present = gpuNodes(own.devices);
    gpus = own.gpus === "all" ? present : own.gpus.split(",").map((t) => {
      const g = Number(t);
      if (!Number.isInteger(g) || g < 0) throw new UsageError(`--gpus: expected GPU indices, got "${t}"`);
      if (!present.includes(g)) {
        throw new UsageError(
          `--gpus: ${own.devices}/nvidia${g} does not exist (found: ${present.join(", ") || "none"})`,
        );
      }
      return g;
    });
    if (gpus.length === 0) {
      throw new UsageError(`--gpus all: no ${own.devices}/nvidiaN device nodes on this host`);
    }
    if (new Set(gpus).size !== gpus.length) throw new UsageError(`--gpus: a GPU is listed twice`);
  }
  const deno = Deno.execPath();
  const isScript = /\.(ts|js|mjs)$/.test(script);
  // `--fresh` empties the folder once, in the check below, before any worker starts: given to every worker, one
  // starting late would delete what the others had already claimed and written.
  const workerArgs = isScript ? scriptArgs.filter((a) => a !== "--fresh") : scriptArgs;
  const base = isScript ? [deno, "run", "-A", script, ...workerArgs] : [script, ...scriptArgs];
  if (isScript) {
    // The script's own checks, once (and its --fresh): bad flags give their one line here, before any worker
    // starts.
    const check = await new Deno.Command(deno, {
      args: ["run", "-A", script, ...scriptArgs, "--list"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (check.code !== 0) {
      Deno.stderr.writeSync(check.stderr);
      return check.code;
    }
  }
  const names = gpus.length > 0
    ? gpus.map((g) => `gpu${g}`)
    : Array.from({ length: own.workers ?? 1 }, (_, i) => `w${i}`);
  const children = names.map((name, i) => {
    const argv = isScript ? [...base, `--worker-id=${name}`] : base;
    const cmd = gpus.length > 0 ? pinnedCommand(gpus[i], gpus, argv, own.devices) : argv;
    const child = new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" }).spawn();
    return {
      name,
      child,
      logs: Promise.all([prefixLines(child.stdout, name), prefixLines(child.stderr, name)]),
    };
  });
  console.error(
    `sweep: ${children.length} worker(s) (${names.join(", ")}) on ${basename(script)}${
      gpus.length > 0 ? ", each seeing only its GPU" : ""
    }`,
  );
  const stopAll = () => children.forEach((c) => c.child.kill("SIGTERM"));
  Deno.addSignalListener("SIGINT", stopAll);
  const statuses = Promise.all(children.map((c) => c.child.status));
  const out = outOf(scriptArgs);
  const every = own.monitor ?? 0;
  const monitoring = every > 0 && out ? monitorGpus(join(out, "gpu_usage.csv"), every, statuses) : null;
  const results = await statuses;
  await Promise.all(children.map((c) => c.logs));
  await monitoring;
  Deno.removeSignalListener("SIGINT", stopAll);
  const worst = Math.max(...results.map((s) => s.code));
  console.error(`sweep: workers exited with ${results.map((s, i) => `${names[i]} ${s.code}`).join(", ")}`);
  return worst;
}

if (import.meta.main) {
  await runMain("sweep", async () => {
    const code = await launch(Deno.args);
    if (code !== 0) Deno.exit(code);
  });
}
