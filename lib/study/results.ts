/**
 * The results folder that many worker processes share, on one machine or across a cluster's shared filesystem.
 * Nothing in it is ever appended to or edited in place:
 *
 * ```
 * <out>/runs/<runId>.json         one result per finished run (spec, metrics, history), written atomically,
 *                                 with a checksum; present = done
 * <out>/claims/<runId>.json       a worker's claim on a run, created exclusively (O_EXCL), its mtime the
 *                                 worker's heartbeat; removed when the run is done
 * <out>/checkpoints/<group>.ckpt  the checkpoint of a group of runs training together
 * <out>/analyses/<name>.json      a figure's computation besides its runs (e.g. of a pretrained model), with
 *                                 the hash of its inputs and a checksum
 * <out>/damaged/                  result and checkpoint files that failed their checks, set aside
 * <out>/runs.csv, summaries, charts, index.html   rebuilt from runs/ by whichever worker finishes last
 * ```
 *
 * A claim whose worker died is taken over: at once when the worker ran on this host and its process is gone,
 * otherwise once its heartbeat is older than the timeout. Taking over is a rename (atomic: of two workers racing
 * for one stale claim, one wins), then an exclusive create. A worker that was only slow and lost its claim
 * finishes anyway; both write the same result file (a run's result is a function of its spec), so every run is
 * counted exactly once.
 * @module
 */
import { hostname } from "node:os";
import { basename, join } from "node:path";
import { readTextOrNull, writeFileAtomic } from "../core/fs.ts";
import type { Accuracy } from "../train/eval.ts";
import { canonicalJson, runId, type RunSpec, sha256 } from "./spec.ts";

/** Accuracy of one run at one length. */
export interface LengthAccuracy extends Accuracy {
  length: number;
}

/** One point of an accuracy-vs-step curve. */
export interface CurvePoint extends LengthAccuracy {
  step: number;
}

/** An attention map of one layer after training (row-major T×T, values rounded to 5 significant digits). */
export interface LayerMap {
  layer: number;
  T: number;
  /** (1/D) Σ_d M_d, Eq. 8. */
  map: number[];
  /** The average attention mask. */
  mask: number[];
}

/** What a finished run wrote. */
export interface RunResult {
  format: "mimetic-result/1";
  id: string;
  spec: RunSpec;
  /** The figure's labels of the run (e.g. `{ state_size: 64, init: "mimetic" }`), for tables and charts. */
  labels: Record<string, string | number | boolean>;
  final: LengthAccuracy[];
  curve: CurvePoint[];
  finalLoss: number | null;
  divergedStep: number | null;
  /** [step, loss, gradNorm] at every logged step. */
  history: [number, number | null, number | null][];
  maps: LayerMap[];
  /** Seconds training (summed over resumes) and evaluating after training. */
  trainSeconds: number;
  evalSeconds: number;
  /** Runs that trained together with this one (its group's size). */
  groupSize: number;
  device: string;
  worker: string;
  finishedAt: string;
  /** SHA-256 of the canonical JSON of every other field. */
  checksum: string;
}

/** A file that failed its checks; it has been moved to `damaged/`. */
export interface DamagedFile {
  path: string;
  movedTo: string;
  reason: string;
}

/** The paths of a results folder. */
export class ResultsFolder {
  readonly runs: string;
  readonly claims: string;
  readonly checkpoints: string;
  readonly damaged: string;
  readonly analyses: string;
  constructor(readonly root: string) {
    this.runs = join(root, "runs");
    this.analyses = join(root, "analyses");
    this.claims = join(root, "claims");
    this.checkpoints = join(root, "checkpoints");
    this.damaged = join(root, "damaged");
  }

  /** Creates the folders (idempotent). */
  create(): void {
    for (const d of [this.runs, this.claims, this.checkpoints]) Deno.mkdirSync(d, { recursive: true });
  }

  resultPath(id: string): string {
    return join(this.runs, `${id}.json`);
  }

  /** Whether run `id` has a result file (whole or damaged: results are written atomically). */
  hasResult(id: string): boolean {
    try {
      Deno.statSync(this.resultPath(id));
      return true;
    } catch {
      return false;
    }
  }

  claimPath(id: string): string {
    return join(this.claims, `${id}.json`);
  }

  checkpointPath(group: string): string {
    return join(this.checkpoints, `${group}.ckpt`);
  }

  analysisPath(name: string): string {
    return join(this.analyses, `${name}.json`);
  }

  /** Moves a damaged file into `damaged/` (keeping it for inspection) and says where. */
  setAside(path: string, reason: string): DamagedFile {
    Deno.mkdirSync(this.damaged, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const movedTo = join(this.damaged, `${basename(path)}.${stamp}.${Deno.pid}`);
    try {
      Deno.renameSync(path, movedTo);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // another worker set it aside first
    }
    return { path, movedTo, reason };
  }
}

/** The checksum of a result: SHA-256 of the canonical JSON of every field but the checksum. */
function resultChecksum(r: Omit<RunResult, "checksum">): string {
  return sha256(canonicalJson(r));
}

/** Writes a run's result atomically, with its checksum. */
export function writeResult(folder: ResultsFolder, result: Omit<RunResult, "checksum" | "format">): void {
  const body = { format: "mimetic-result/1" as const, ...result };
  const full: RunResult = { ...body, checksum: resultChecksum(body) };
  writeFileAtomic(folder.resultPath(result.id), JSON.stringify(full) + "\n");
}

/**
 * Reads one result file: the result, null when there is none, or the reason it is damaged (bad JSON, wrong
 * format, checksum mismatch, a spec whose id is not the file's name).
 */
export function readResult(path: string): RunResult | null | { damaged: string } {
  const text = readTextOrNull(path);
  if (text === null) return null;
  let r: RunResult;
  try {
    r = JSON.parse(text);
  } catch (e) {
    return { damaged: `not valid JSON (${(e as Error).message.split("\n")[0]})` };
  }
  if (!r || r.format !== "mimetic-result/1" || typeof r.checksum !== "string") {
    return { damaged: "not a mimetic result file" };
  }
  const { checksum, ...rest } = r;
  let sum: string;
  try {
    sum = resultChecksum(rest);
  } catch (e) {
    return { damaged: (e as Error).message };
  }
  if (sum !== checksum) return { damaged: "checksum mismatch" };
  const expected = basename(path, ".json");
  let id: string;
  try {
    id = runId(r.spec);
  } catch (e) {
    return { damaged: `its spec is not valid data (${(e as Error).message})` };
  }
  if (r.id !== expected || id !== expected) return { damaged: `its spec's id is ${id}, not ${expected}` };
  return r;
}

/**
 * Every valid result in the folder by id. Damaged files are set aside (and reported through `onDamaged`), so
 * their runs count as not done and are redone.
 */
export function readResults(
  folder: ResultsFolder,
  onDamaged: (d: DamagedFile) => void = () => {},
): Map<string, RunResult> {
  const out = new Map<string, RunResult>();
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(folder.runs)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    const path = join(folder.runs, e.name);
    const r = readResult(path);
    if (r === null) continue;
    if ("damaged" in r) onDamaged(folder.setAside(path, r.damaged));
    else out.set(r.id, r);
  }
  return out;
}

/** Who holds a claim. */
export interface ClaimInfo {
  worker: string;
  host: string;
  pid: number;
  /** The process's start time (Linux /proc/<pid>/stat field 22), so a reused pid is not mistaken for it. */
  pidStart: string | null;
  /** The group the run trains in, and its runs (a worker taking over resumes the whole group's checkpoint). */
  group: string;
  runs: string[];
  claimedAt: string;
}

/** The start time of a process on this host, or null where /proc is not available. */
function processStart(pid: number): string | null {
  const stat = readTextOrNull(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // Field 2 (comm) is in parentheses and may hold spaces: split after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19] ?? null; // field 22 overall
}

const HOST = hostname();

/** This worker's identity. */
export function selfClaim(worker: string, group: string, runs: string[]): ClaimInfo {
  return {
    worker,
    host: HOST,
    pid: Deno.pid,
    pidStart: processStart(Deno.pid),
    group,
    runs,
    claimedAt: new Date().toISOString(),
  };
}

/** The state of a claim file. */
export type ClaimState =
  | { state: "none" }
  | { state: "live"; info: ClaimInfo | null }
  | { state: "stale"; info: ClaimInfo | null; why: string };

/** Reads a claim and decides whether its worker is alive. */
export function claimState(path: string, timeoutSeconds: number, now = Date.now()): ClaimState {
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { state: "none" };
    throw e;
  }
  let info: ClaimInfo | null = null;
  try {
    info = JSON.parse(readTextOrNull(path) ?? "null");
  } catch { /* half-written by a crash between create and write: judged by its age alone */ }
  if (info && info.host === HOST && info.pid !== Deno.pid) {
    const start = processStart(info.pid);
    if (start === null && Deno.build.os === "linux") {
      return { state: "stale", info, why: `worker ${info.worker} (pid ${info.pid}) is gone` };
    }
    if (start !== null && info.pidStart !== null && start !== info.pidStart) {
      return { state: "stale", info, why: `worker ${info.worker} (pid ${info.pid}) is gone` };
    }
  }
  const age = (now - (stat.mtime?.getTime() ?? 0)) / 1000;
  if (age > timeoutSeconds) {
    return { state: "stale", info, why: `no heartbeat for ${age.toFixed(0)} s` };
  }
  return { state: "live", info };
}

/**
 * Claims a run: creates its claim file exclusively, or takes over a stale one. Returns whether this worker now
 * holds it.
 */
export function tryClaim(path: string, info: ClaimInfo, timeoutSeconds: number): boolean {
  const create = () => {
    try {
      const f = Deno.openSync(path, { write: true, createNew: true });
      try {
        const bytes = new TextEncoder().encode(JSON.stringify(info) + "\n");
        let off = 0;
        while (off < bytes.length) off += f.writeSync(bytes.subarray(off));
      } finally {
        f.close();
      }
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return false;
      throw e;
    }
  };
  if (create()) return true;
  const st = claimState(path, timeoutSeconds);
  if (st.state !== "stale") return st.state === "none" ? create() : false;
  // Rename, then create: of two workers taking over the same stale claim, only one rename succeeds.
  const aside = `${path}.stale-${Deno.pid}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(16)}`;
  try {
    Deno.renameSync(path, aside);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  Deno.removeSync(aside);
  return create();
}

/** Refreshes the heartbeat of claims this worker holds; returns the ids whose claim is no longer its own. */
export function heartbeat(folder: ResultsFolder, ids: readonly string[], worker: string): string[] {
  const lost: string[] = [];
  const now = new Date();
  for (const id of ids) {
    const path = folder.claimPath(id);
    try {
      const info = JSON.parse(readTextOrNull(path) ?? "null") as ClaimInfo | null;
      if (!info || info.worker !== worker || info.pid !== Deno.pid) {
        lost.push(id);
        continue;
      }
      Deno.utimeSync(path, now, now);
    } catch {
      lost.push(id);
    }
  }
  return lost;
}

/** Removes this worker's claims (after its results are written). */
export function releaseClaims(folder: ResultsFolder, ids: readonly string[], worker: string): void {
  for (const id of ids) {
    const path = folder.claimPath(id);
    try {
      const info = JSON.parse(readTextOrNull(path) ?? "null") as ClaimInfo | null;
      if (info && info.worker === worker && info.pid === Deno.pid) Deno.removeSync(path);
    } catch { /* gone already */ }
  }
}

/** What an analysis wrote: its value, and the hash of the inputs it was computed from. */
export interface AnalysisResult {
  format: "mimetic-analysis/1";
  name: string;
  /** SHA-256 of the canonical JSON of `inputs`. */
  inputsId: string;
  inputs: unknown;
  value: unknown;
  seconds: number;
  device: string;
  finishedAt: string;
  /** SHA-256 of the canonical JSON of every other field. */
  checksum: string;
}

/** The id of an analysis's inputs: SHA-256 of their canonical JSON. */
export function analysisInputsId(inputs: unknown): string {
  return sha256(canonicalJson(inputs, "inputs"));
}

/** Writes an analysis atomically, with its checksum. */
export function writeAnalysis(
  folder: ResultsFolder,
  a: Omit<AnalysisResult, "checksum" | "format" | "inputsId">,
): void {
  const body = { format: "mimetic-analysis/1" as const, ...a, inputsId: analysisInputsId(a.inputs) };
  Deno.mkdirSync(folder.analyses, { recursive: true });
  writeFileAtomic(
    folder.analysisPath(a.name),
    JSON.stringify({ ...body, checksum: sha256(canonicalJson(body)) }) + "\n",
  );
}

/**
 * The stored analysis `name` when it was computed from these inputs; null when there is none, or it is from other
 * inputs, or it is damaged (bad JSON, wrong format, checksum mismatch).
 */
export function readAnalysis(folder: ResultsFolder, name: string, inputs: unknown): AnalysisResult | null {
  const text = readTextOrNull(folder.analysisPath(name));
  if (text === null) return null;
  try {
    const a = JSON.parse(text) as AnalysisResult;
    if (!a || a.format !== "mimetic-analysis/1" || a.name !== name) return null;
    const { checksum, ...rest } = a;
    if (sha256(canonicalJson(rest)) !== checksum) return null;
    return a.inputsId === analysisInputsId(inputs) ? a : null;
  } catch {
    return null;
  }
}
