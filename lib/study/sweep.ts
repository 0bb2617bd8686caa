/**
 * The sweep worker: trains the runs of a grid that are not done yet, in groups on the run axis, claiming each run
 * so that any number of workers (processes on one host, tasks of a Slurm job array, shards) can share one results
 * folder (`results.ts` describes it). Any worker may be killed at any moment: its claims go stale, another worker
 * (or its restart) takes them over and resumes the group's checkpoint, and every run ends with exactly one result
 * file.
 *
 * A group holds runs whose specs differ only in what the run axis carries ({@link packKey}); how many share it
 * comes from the memory estimate of the model and the adapter's limits (or `groupSize`). A run's result does not
 * depend on its group: kernels choose their reduction orders from each run's own sizes, never from K.
 * @module
 */
import { hostname } from "node:os";
import { foldIn, key } from "../core/random.ts";
import { gpuInfo, runtimeStats } from "../core/runtime.ts";
import { tensor } from "../core/tensor.ts";
import { initRule } from "../nn/inits.ts";
import { applyLM, layerAttentionMap, type LMConsts, type LMParams } from "../nn/lm.ts";
import type { CheckpointError } from "../train/checkpoint.ts";
import { evaluateRows } from "../train/eval.ts";
import { adapterMemoryBudget, evalChunkRows, maxRunsThatFit, trainingFitMessage } from "../train/memory.ts";
import type { Task, TaskConfig, TaskTable } from "../train/task.ts";
import { disposeModel, trainLM, type TrainRun } from "../train/train.ts";
import { fmtSeconds, Progress } from "./progress.ts";
import {
  claimState,
  type DamagedFile,
  heartbeat,
  type LayerMap,
  type LengthAccuracy,
  readResults,
  releaseClaims,
  ResultsFolder,
  selfClaim,
  tryClaim,
  writeResult,
} from "./results.ts";
import { groupId, packKey, type RunSpec } from "./spec.ts";

/** One run of a sweep: its id, its spec, and the labels a figure shows it by. */
export interface PlannedRun {
  id: string;
  spec: RunSpec;
  labels: Record<string, string | number | boolean>;
}

/** How a worker runs. */
export interface WorkerOptions {
  /** The results folder. */
  out: string;
  tasks: TaskTable;
  /** This worker's name in claims and logs. Default: host-pid. */
  worker?: string;
  /** Take only the runs at positions i, i+n, i+2n, ... of the grid (a static split). */
  shard?: { index: number; count: number };
  /** At most this many runs per group; 0: as many as fit in memory. */
  groupSize: number;
  /** Seconds without a heartbeat after which a claim is taken over. */
  claimTimeout: number;
  /** Read losses every this many steps. */
  logEvery: number;
  /** Checkpoint every this many steps (0: never). */
  checkpointEvery: number;
  /** Prefix of log lines, e.g. the figure's name. */
  label: string;
  /** Once nothing is left to claim, wait for runs that other workers hold (and take them over if they die). */
  wait: boolean;
  /** Seconds between looks at the folder while waiting. Default 5. */
  pollSeconds?: number;
}

/** What a worker did. */
export interface WorkerReport {
  trained: number;
  groups: number;
  /** Runs of this worker's share that are done (by anyone). */
  done: number;
  /** Runs of this worker's share still not done when it stopped (claimed by others, when not waiting). */
  left: number;
}

const log = (line: string) => console.error(line);

/** The runs of one group, as the trainer sees them (an init that starts from weights gives them per run). */
function trainRuns(group: readonly PlannedRun[]): TrainRun[] {
  return group.map(({ spec }) => {
    const rule = initRule(spec.init);
    return {
      seed: spec.seed,
      lr: spec.train.lr,
      weightDecay: spec.train.weightDecay,
      mimetic: (layer: number) => rule.layer(spec.init as never, layer),
      initial: rule.params ? () => rule.params!(spec.init as never, spec.model) : undefined,
    };
  });
}

function taskOf(tasks: TaskTable, spec: RunSpec): { task: Task<TaskConfig>; cfg: TaskConfig } {
  const { kind, ...cfg } = spec.task;
  return { task: tasks[kind] as unknown as Task<TaskConfig>, cfg };
}

/** Accuracies of K runs at each length: [length][run]. */
async function evaluate(
  tasks: TaskTable,
  spec: RunSpec,
  model: { params: LMParams; consts: LMConsts },
  K: number,
  lengths: readonly number[],
  samples: number,
): Promise<LengthAccuracy[][]> {
  const { task, cfg } = taskOf(tasks, spec);
  const out: LengthAccuracy[][] = [];
  for (const L of lengths) {
    const rows = task.evalRows(foldIn(key(spec.eval.seed), L), cfg, L, samples);
    const accs = await evaluateRows(
      (ids) => applyLM(model.params, model.consts, ids, spec.model),
      K,
      rows,
      evalChunkRows(
        spec.model,
        K,
        rows.T,
        adapterMemoryBudget(gpuInfo()),
        gpuInfo().limits.maxStorageBufferBindingSize,
        samples,
        gpuInfo().limits.maxBufferSize,
      ),
    );
    out.push(accs.map((a) => ({ length: L, ...a })));
  }
  return out;
}

const round5 = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(5)) : 0);

/** The attention maps of the spec's map layers for each of K runs: [run][layer]. */
async function attentionMaps(
  tasks: TaskTable,
  spec: RunSpec,
  model: { params: LMParams; consts: LMConsts },
  K: number,
): Promise<LayerMap[][]> {
  const out: LayerMap[][] = Array.from({ length: K }, () => []);
  const { layers, length } = spec.eval.maps;
  if (layers.length === 0) return out;
  const { task, cfg } = taskOf(tasks, spec);
  const row = task.evalRows(foldIn(key(spec.eval.seed), length), cfg, length, 1);
  const T = row.T;
  const ids = new Int32Array(K * T);
  for (let k = 0; k < K; k++) ids.set(row.inputs.subarray(0, T), k * T);
  for (const layer of layers) {
    const idsT = tensor(ids, [K, 1, T], "i32");
    const m = layerAttentionMap(model.params, model.consts, spec.model, layer, idsT);
    const [map, mask] = [await m.map.toArray(), await m.mask.toArray()];
    [idsT, m.map, m.mask].forEach((t) => t.dispose());
    for (let k = 0; k < K; k++) {
      const slice = (a: ArrayLike<number>) => Array.from(a as Float32Array).slice(k * T * T, (k + 1) * T * T);
      out[k].push({ layer, T, map: slice(map).map(round5), mask: slice(mask).map(round5) });
    }
  }
  return out;
}

/**
 * Trains every run of `runs` (this worker's share) that has no result yet, then returns. Runs claimed by other
 * live workers are left to them; with `wait`, the worker stays until they are done, taking over the claims of a
 * worker that dies.
 */
export async function runWorker(runs: readonly PlannedRun[], o: WorkerOptions): Promise<WorkerReport> {
  const folder = new ResultsFolder(o.out);
  folder.create();
  const worker = o.worker ?? `${hostname()}-${Deno.pid}`;
  const mine = o.shard ? runs.filter((_, i) => i % o.shard!.count === o.shard!.index) : [...runs];
  const info = gpuInfo();
  const budget = adapterMemoryBudget(info);
  const limits = { binding: info.limits.maxStorageBufferBindingSize, buffer: info.limits.maxBufferSize };
  const seenDamaged = new Set<string>();
  const onDamaged = (d: DamagedFile) => {
    if (seenDamaged.has(d.path)) return;
    seenDamaged.add(d.path);
    log(`${o.label}: ${d.path} is damaged (${d.reason}); set aside as ${d.movedTo}, its run is redone`);
  };
  // Refuse up front a run that cannot fit even alone, before any group of this share trains.
  const finished = readResults(folder, onDamaged);
  checkRunsFit(mine.filter((r) => !finished.has(r.id)), o.tasks, budget, limits);
  let trained = 0, groups = 0, waiting = false;
  const report = (results: Map<string, unknown>) => {
    const done = mine.filter((r) => results.has(r.id)).length;
    return { trained, groups, done, left: mine.length - done };
  };
  while (true) {
    const results = readResults(folder, onDamaged);
    const todo = mine.filter((r) => !results.has(r.id));
    if (todo.length === 0) return report(results);
    const group = claimGroup(todo, folder, worker, o, budget, limits);
    if (!group) {
      if (!o.wait) return report(results);
      if (!waiting) log(`${o.label}: ${todo.length} run(s) left, all held by other workers; waiting`);
      waiting = true;
      await new Promise((r) => setTimeout(r, 1000 * (o.pollSeconds ?? 5)));
      continue;
    }
    waiting = false;
    groups++;
    const done = mine.length - todo.length;
    await trainGroup(
      group,
      folder,
      worker,
      o,
      onDamaged,
      `${done + 1}-${done + group.length}/${mine.length}`,
    );
    trained += group.length;
  }
}

/**
 * Claims the next group: a dead worker's whole group first (to resume its checkpoint), else fresh runs. Exported
 * for tests only.
 * @internal
 */
export function claimGroup(
  todo: readonly PlannedRun[],
  folder: ResultsFolder,
  worker: string,
  o: WorkerOptions,
  budget: number,
  limits: BufferLimits,
): PlannedRun[] | null {
  const states = new Map(todo.map((r) => [r.id, claimState(folder.claimPath(r.id), o.claimTimeout)]));
  const available = todo.filter((r) => states.get(r.id)!.state !== "live");
  if (available.length === 0) return null;
  const byId = new Map(available.map((r) => [r.id, r]));
  const claim = (members: PlannedRun[]) => {
    const ids = members.map((r) => r.id);
    const claimed = members.filter((r) =>
      tryClaim(folder.claimPath(r.id), selfClaim(worker, groupId(ids), ids), o.claimTimeout)
    );
    // A worker writes a run's result before it releases the claim, so a run whose claim was free may have been
    // finished since this worker read the results: look again now that the claim is held, and give back the
    // finished ones (else they would be trained a second time).
    const finished = claimed.filter((r) => folder.hasResult(r.id));
    releaseClaims(folder, finished.map((r) => r.id), worker);
    const got = claimed.filter((r) => !finished.includes(r));
    if (got.length > 0 && got.length < members.length) {
      // Some went to another worker meanwhile: record the group actually formed.
      const gids = got.map((r) => r.id);
      for (const r of got) {
        Deno.writeTextFileSync(
          folder.claimPath(r.id),
          JSON.stringify(selfClaim(worker, groupId(gids), gids)),
        );
      }
    }
    return got;
  };
  for (const r of available) {
    const st = states.get(r.id)!;
    if (st.state !== "stale" || !st.info) continue;
    const members = st.info.runs.map((id) => byId.get(id));
    if (members.every((m) => m !== undefined)) {
      log(`${o.label}: taking over ${members.length} run(s) of worker ${st.info.worker} (${st.why})`);
      const got = claim(members as PlannedRun[]);
      if (got.length > 0) return got;
    }
  }
  // A group of the first runs still free; when another worker wins all of them first (two workers started
  // together race for the same group), the next runs, rather than waiting on runs that are already taken.
  let free = available;
  while (free.length > 0) {
    const first = free[0];
    const key = packKey(first.spec);
    const size = groupSizeFor(first.spec, o, budget, limits);
    const candidates = free.filter((r) => packKey(r.spec) === key).slice(0, size);
    const got = claim(candidates);
    if (got.length > 0) return got;
    const lost = new Set(candidates.map((r) => r.id));
    free = free.filter((r) => !lost.has(r.id));
  }
  return null;
}

/**
 * Throws a one-line RangeError, naming the run by its labels, when one of `runs` could not train or be evaluated
 * on this adapter even alone: its training step needs more than `budget` bytes (or binds one tensor larger than
 * `limits.binding`, or any tensor larger than `limits.buffer`; the message names the memory and says to lower
 * `--batch`), or one evaluation row at one of its
 * lengths does not fit. A sweep calls it before training anything, so that a grid whose longest run cannot fit
 * is refused at once rather than after hours of the runs that do.
 * @throws {RangeError} e.g. `run (copy default 2000): needs 3.1 GiB for 1 run at batch 64 × T 4002 (activations
 * 2.9 GiB); the adapter has ~1.0 GiB: lower --batch`.
 */
export function checkRunsFit(
  runs: readonly PlannedRun[],
  tasks: TaskTable,
  budget: number,
  limits: BufferLimits,
): void {
  const seen = new Set<string>();
  for (const r of runs) {
    const { task, cfg } = taskOf(tasks, r.spec);
    const T = task.trainContext(cfg);
    const e = r.spec.eval;
    const evalLengths = [...new Set([...e.lengths, ...e.curve.lengths])];
    const shape = JSON.stringify([
      r.spec.model,
      r.spec.train.batch,
      T,
      evalLengths.map((L) => task.evalContext(cfg, L)),
    ]);
    if (seen.has(shape)) continue;
    seen.add(shape);
    const name = `run (${Object.values(r.labels).join(" ")})`;
    const why = trainingFitMessage(r.spec.model, {
      runs: 1,
      batch: r.spec.train.batch,
      T,
      budgetBytes: budget,
      maxBindingBytes: limits.binding,
      maxBufferBytes: limits.buffer,
      flag: "--batch",
    });
    if (why) throw new RangeError(`${name}: ${why}`);
    for (const L of evalLengths) {
      try {
        evalChunkRows(
          r.spec.model,
          1,
          task.evalContext(cfg, L),
          budget,
          limits.binding,
          undefined,
          limits.buffer,
        );
      } catch (err) {
        if (err instanceof RangeError) throw new RangeError(`${name}, length ${L}: ${err.message}`);
        throw err;
      }
    }
  }
}

/** The adapter's limits on one tensor: bound whole (`maxStorageBufferBindingSize`) and at all (`maxBufferSize`). */
export interface BufferLimits {
  binding: number;
  buffer: number;
}

/** How many runs of this spec's shape train together. */
function groupSizeFor(spec: RunSpec, o: WorkerOptions, budget: number, limits: BufferLimits): number {
  const { task, cfg } = taskOf(o.tasks, spec);
  const T = task.trainContext(cfg);
  const fit = maxRunsThatFit(
    spec.model,
    spec.train.batch,
    T,
    budget,
    limits.binding,
    undefined,
    limits.buffer,
  );
  if (fit < 1) {
    const why = trainingFitMessage(spec.model, {
      runs: 1,
      batch: spec.train.batch,
      T,
      budgetBytes: budget,
      maxBindingBytes: limits.binding,
      maxBufferBytes: limits.buffer,
      flag: "--batch",
    });
    throw new RangeError(why ?? `one run at batch ${spec.train.batch} × T ${T} does not fit: lower --batch`);
  }
  return o.groupSize > 0 ? Math.min(o.groupSize, fit) : fit;
}

/** Trains one claimed group, evaluates it and writes one result per run. */
async function trainGroup(
  group: PlannedRun[],
  folder: ResultsFolder,
  worker: string,
  o: WorkerOptions,
  onDamaged: (d: DamagedFile) => void,
  position: string,
): Promise<void> {
  const ids = group.map((r) => r.id);
  const gid = groupId(ids);
  const spec = group[0].spec;
  const K = group.length;
  const { task, cfg } = taskOf(o.tasks, spec);
  const ckptPath = folder.checkpointPath(gid);
  const names = group.map((r) => Object.values(r.labels).join(" ")).join(", ");
  log(`${o.label}: training runs ${position} (K ${K}: ${names}) as ${worker}`);
  let lostReported = false;
  let lastBeat = performance.now();
  const beat = () => {
    lastBeat = performance.now();
    const lost = heartbeat(folder, ids, worker);
    if (lost.length > 0 && !lostReported) {
      lostReported = true;
      log(`${o.label}: another worker took over ${lost.length} of this group's claims; finishing anyway`);
    }
  };
  // The training loop holds the event loop between readbacks, so the heartbeat also runs from its step hook.
  const timer = setInterval(beat, Math.max(1000, (o.claimTimeout * 1000) / 6));
  const beatEvery = Math.max(1000, (o.claimTimeout * 1000) / 6);
  const progress = new Progress(`${o.label} runs ${position}`);
  try {
    const compiledBefore = runtimeStats();
    const trained = await trainLM(spec.model, trainRuns(group), (k, b) => task.trainBatch(k, cfg, b), {
      steps: spec.train.steps,
      batch: spec.train.batch,
      warmup: spec.train.warmup,
      weightDecay: spec.train.weightDecay,
      clipNorm: spec.train.clipNorm,
      beta1: spec.train.beta1,
      beta2: spec.train.beta2,
      eps: spec.train.eps,
      logEvery: o.logEvery,
      checkpointEvery: o.checkpointEvery,
      checkpointPath: o.checkpointEvery > 0 ? ckptPath : undefined,
      fingerprint: ids.join(","),
      evalSteps: spec.eval.curve.steps,
      onEval: (_step, model) =>
        evaluate(o.tasks, spec, model, K, spec.eval.curve.lengths, spec.eval.curve.samples),
      onStep: () => {
        if (performance.now() - lastBeat > beatEvery) beat();
      },
      onDamagedCheckpoint: (e: CheckpointError) => onDamaged(folder.setAside(e.path, e.reason)),
      onLog: ({ step, loss }) =>
        progress.update(
          step,
          spec.train.steps,
          `loss ${loss.map((l) => l.toFixed(3)).join(" ")}`,
          step === spec.train.steps,
        ),
    });
    if (trained.resumed) log(`${o.label}: resumed from its checkpoint`);
    // Shader compiles happen in a group's first steps (pipelines are cached per process, so later groups of
    // the same shapes compile nothing): said apart, since on a GPU they can be seconds of the training time.
    const compiledAfter = runtimeStats();
    const newPipelines = compiledAfter.pipelines - compiledBefore.pipelines;
    const compiled = newPipelines > 0
      ? ` (${
        fmtSeconds(compiledAfter.pipelineSeconds - compiledBefore.pipelineSeconds)
      } of it compiling ${newPipelines} pipelines)`
      : "";
    const evalStart = performance.now();
    const final = await evaluate(o.tasks, spec, trained, K, spec.eval.lengths, spec.eval.samples);
    const maps = await attentionMaps(o.tasks, spec, trained, K);
    const evalSeconds = (performance.now() - evalStart) / 1000;
    // onEval returned [length][run] at each curve step.
    const curveOf = (k: number) =>
      trained.evals.flatMap(({ step, value }) =>
        (value as LengthAccuracy[][]).map((perLength) => ({ step, ...perLength[k] }))
      );
    const device = gpuInfo().description;
    group.forEach((r, k) => {
      writeResult(folder, {
        id: r.id,
        spec: r.spec,
        labels: r.labels,
        final: final.map((perLength) => perLength[k]),
        curve: curveOf(k),
        finalLoss: Number.isFinite(trained.finalLoss[k]) ? trained.finalLoss[k] : null,
        divergedStep: trained.diverged[k],
        history: trained.history.filter((h) => h.run === k).map((h) => [
          h.step,
          Number.isFinite(h.loss) ? h.loss : null,
          Number.isFinite(h.gradNorm) ? h.gradNorm : null,
        ]),
        maps: maps[k],
        trainSeconds: trained.seconds,
        evalSeconds,
        groupSize: K,
        device,
        worker,
        finishedAt: new Date().toISOString(),
      });
    });
    const summary = group.map((r, k) =>
      `${Object.values(r.labels).join(" ")}: ${
        final.map((pl) => `${pl[k].length}:${pl[k].exact.toFixed(2)}`).join(" ")
      }`
    );
    log(
      `${o.label}: trained in ${fmtSeconds(trained.seconds)}${compiled}, evaluated in ${
        fmtSeconds(evalSeconds)
      }\n  ${summary.join("\n  ")}`,
    );
    disposeModel(trained);
    try {
      Deno.removeSync(ckptPath);
    } catch { /* none written */ }
  } finally {
    clearInterval(timer);
    releaseClaims(folder, ids, worker);
  }
}
