/**
 * The study layer: run ids that cover the whole spec, and sweeps that many workers share through one results
 * folder, tried with the real fig7 script on tiny settings: a rerun with another --c trains only the new runs;
 * two workers, one of them killed (SIGKILL) at several points and restarted, finish with every run exactly once
 * and the same runs.csv as one uninterrupted worker; stale claims are taken over; shards split the grid; damaged
 * result and checkpoint files are reported in one line, set aside, and their runs redone.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { join } from "node:path";
import { canonicalJson, groupId, packKey, runId, type RunSpec } from "../lib/study/spec.ts";
import { readCsv } from "../lib/study/csv.ts";
import { MAMBA1_DEFAULTS } from "../lib/nn/mamba1.ts";
import { MAMBA2_DEFAULTS } from "../lib/nn/mamba2.ts";
import { ATTENTION_DEFAULTS } from "../lib/nn/attention.ts";
import { MIMETIC_ALL } from "../lib/nn/inits.ts";
import { checkRunsFit, claimGroup, type PlannedRun } from "../lib/study/sweep.ts";
import { ResultsFolder } from "../lib/study/results.ts";
import { estimateEvalMemory, estimateTrainingMemory } from "../lib/train/memory.ts";
import { TASKS } from "../tasks/registry.ts";
import { noGpu } from "./harness.ts";
import { comparableRuns, FIG7, messageLines, runScript, spawnScript, tinyFig7 } from "./cli_util.ts";

const tmpRoot = Deno.makeTempDirSync({ prefix: "mimetic_sweep_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmpRoot, { recursive: true }));
let dirs = 0;
const freshDir = (name: string) => join(tmpRoot, `${name}-${dirs++}`);

/** A spec with every kind of field: three mixers, a mimetic init on some layers, a curve and maps. */
function sampleSpec(): RunSpec {
  return {
    model: {
      vocab: 30,
      dModel: 32,
      normEps: 1e-5,
      layers: [
        { ...MAMBA2_DEFAULTS, dState: 16, headDim: 16 },
        { ...MAMBA1_DEFAULTS, dState: 8 },
        { ...ATTENTION_DEFAULTS, headDim: 8 },
      ],
    },
    init: { ...MIMETIC_ALL, layers: [0, 1] },
    task: { kind: "copy", variant: "copy", vocab: 26, context: 48, minLen: 2, maxLen: 8 },
    train: {
      steps: 10,
      batch: 4,
      lr: 1e-3,
      warmup: 2,
      weightDecay: 0.1,
      clipNorm: 1,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    },
    seed: 3,
    eval: {
      lengths: [4, 8],
      samples: 16,
      seed: 7,
      curve: { steps: [5, 10], lengths: [8], samples: 8 },
      maps: { layers: [0], length: 8 },
    },
  };
}

/** Every leaf of a JSON value, as a path of keys. */
function leafPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (v === null || typeof v !== "object") return [path];
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  return entries.flatMap(([k, x]) => leafPaths(x, [...path, k]));
}

/** A copy of `spec` with the leaf at `path` changed (numbers nudged, booleans flipped, strings altered). */
function mutate(spec: RunSpec, path: (string | number)[]): RunSpec {
  const copy = structuredClone(spec) as unknown as Record<string | number, unknown>;
  let node = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  const v = node[last];
  node[last] = typeof v === "number"
    ? v + (Number.isInteger(v) ? 1 : v / 2 || 1e-3)
    : typeof v === "boolean"
    ? !v
    : `${v}x`;
  return copy as unknown as RunSpec;
}

Deno.test("runId: changing any single field of a spec changes its id; key order does not", () => {
  const spec = sampleSpec();
  const base = runId(spec);
  const paths = leafPaths(spec);
  assert.ok(paths.length >= 60, `only ${paths.length} fields walked`);
  const ids = new Map<string, string>();
  for (const p of paths) {
    const id = runId(mutate(spec, p));
    assert.notEqual(id, base, `changing ${p.join(".")} kept the id`);
    const twin = ids.get(id);
    assert.equal(twin, undefined, `${p.join(".")} and ${twin} give the same id`);
    ids.set(id, p.join("."));
  }
  // Lists: a longer or shorter one is another run too.
  const longer = structuredClone(spec);
  longer.eval.lengths.push(12);
  assert.notEqual(runId(longer), base);
  const fewer = structuredClone(spec);
  fewer.model.layers.pop();
  assert.notEqual(runId(fewer), base);
  // The same data written in another key order is the same run.
  const reordered = JSON.parse(canonicalJson(spec)) as RunSpec;
  const shuffled = Object.fromEntries(Object.entries(reordered).reverse()) as unknown as RunSpec;
  assert.equal(runId(shuffled), base);
  assert.throws(() => runId({ ...spec, seed: NaN }), /not a finite number/);
});

Deno.test("packKey: runs differing only in seed, lr, weight decay or init share a group; nothing else does", () => {
  const spec = sampleSpec();
  const key = packKey(spec);
  const same = [
    { ...spec, seed: 9 },
    { ...spec, train: { ...spec.train, lr: 5e-4, weightDecay: 0 } },
    { ...spec, init: { kind: "default" as const } },
  ];
  for (const s of same) assert.equal(packKey(s), key);
  for (const p of leafPaths(spec)) {
    const field = p.join(".");
    if (/^(seed|init\.|train\.lr|train\.weightDecay)/.test(field)) continue;
    assert.notEqual(packKey(mutate(spec, p)), key, `${field} should split groups`);
  }
  assert.equal(groupId(["b", "a"]), groupId(["a", "b"]));
});

Deno.test({
  name:
    "fig7 tiny: writes runs.csv, summaries, charts, index.html; a rerun trains nothing; --c 4 trains only new runs",
  ignore: noGpu,
  async fn() {
    const out = freshDir("rerun");
    const args = tinyFig7(out);
    const first = await runScript(FIG7, args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /4\/4 runs done \(4 trained here\)/);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 4 * 2, "4 runs × 2 lengths");
    for (const r of rows) {
      assert.ok(Number(r.exact_acc) >= 0 && Number(r.exact_acc) <= 1);
      assert.equal(r["spec.train.steps"], "4");
      assert.equal(r["spec.model.layers.*.dState"], r.state_size);
    }
    for (
      const f of [
        "fig7a.png",
        "fig7a.svg",
        "fig7a.vl.json",
        "fig7b.png",
        "index.html",
        "summary_generalisation.csv",
      ]
    ) {
      assert.ok(Deno.statSync(join(out, f)).size > 0, `${f} missing`);
    }
    const again = await runScript(FIG7, args);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /4\/4 runs done \(0 trained here\)/);
    assert.deepEqual(comparableRuns(out), comparableRuns(out));

    // Another c: the mimetic runs are new runs; the default runs are the same runs and are not retrained.
    const c4 = await runScript(FIG7, [...args, "--c=4"]);
    assert.equal(c4.code, 0, c4.stderr);
    assert.match(c4.stderr, /4\/4 runs done \(2 trained here\)/);
    const after = readCsv(join(out, "runs.csv"));
    assert.equal(after.length, 8);
    const cOf = (r: Record<string, string>) => r["spec.init.c"];
    assert.deepEqual([...new Set(after.filter((r) => r.init === "mimetic").map(cOf))], ["4"]);
    assert.equal(after.filter((r) => r.init === "default").every((r) => cOf(r) === ""), true);
    // The c = 8 results stay in runs/ (6 result files), apart from the report of the c = 4 grid.
    assert.equal([...Deno.readDirSync(join(out, "runs"))].length, 6);
    const back = await runScript(FIG7, args);
    assert.match(back.stderr, /4\/4 runs done \(0 trained here\)/);
  },
});

/** Waits for a child to exit and returns its stderr. */
async function finish(child: Deno.ChildProcess): Promise<{ code: number; stderr: string }> {
  const [status, err] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, stderr: err };
}

Deno.test({
  name:
    "two workers on one folder, one SIGKILLed at several points and restarted: every run once, runs.csv equal",
  ignore: noGpu,
  async fn() {
    const settings = { steps: 40, seeds: 2, extra: ["--group-size=2", "--claim-timeout=60"] };
    const ref = freshDir("ref");
    const single = await runScript(FIG7, tinyFig7(ref, settings));
    assert.equal(single.code, 0, single.stderr);
    const expected = comparableRuns(ref);
    assert.equal(expected.length, 8 * 2);

    const out = freshDir("shared");
    const args = (id: string) =>
      tinyFig7(out, { ...settings, extra: [...settings.extra, `--worker-id=${id}`] });
    const b = spawnScript(FIG7, args("B"));
    // Worker A is killed after these many seconds each time, then restarted: before it has claimed anything,
    // during training, around checkpoints.
    const logs: string[] = [];
    for (const seconds of [0.5, 2.5, 4, 6.5]) {
      const a = spawnScript(FIG7, args("A"));
      await new Promise((r) => setTimeout(r, seconds * 1000));
      try {
        a.kill("SIGKILL");
      } catch { /* it had already finished */ }
      logs.push((await finish(a)).stderr);
    }
    const last = await finish(spawnScript(FIG7, args("A")));
    const rb = await finish(b);
    assert.equal(last.code, 0, last.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    const got = comparableRuns(out);
    assert.equal(
      new Set(got.map((r) => `${r.run_id}/${r.eval_len}`)).size,
      got.length,
      "a run counted twice",
    );
    assert.deepEqual(got, expected);
    assert.equal([...Deno.readDirSync(join(out, "runs"))].length, 8);
    assert.deepEqual([...Deno.readDirSync(join(out, "claims"))], [], "claims left behind");
    // Both workers trained, and somebody took over a claim of a killed A (or A's restart resumed its group).
    const all = [...logs, last.stderr, rb.stderr].join("\n");
    assert.match(rb.stderr, /training runs/);
    assert.match(all, /taking over|resumed from its checkpoint/);
  },
});

Deno.test({
  name:
    "stale claims: a dead worker's is taken over at once, a silent remote one after the timeout, a live one not",
  ignore: noGpu,
  async fn() {
    const out = freshDir("claims");
    const args = (extra: string[]) => tinyFig7(out, { extra: ["--no-wait", ...extra] });
    const listed = await runScript(FIG7, [...args([]), "--list"]);
    const ids = listed.stdout.trim().split("\n").map((l) => l.split(/\s+/)[0]);
    assert.equal(ids.length, 4);
    Deno.mkdirSync(join(out, "claims"), { recursive: true });
    const claim = (id: string, host: string, pid: number, ageSeconds: number) => {
      const path = join(out, "claims", `${id}.json`);
      Deno.writeTextFileSync(
        path,
        JSON.stringify({ worker: `w-${id}`, host, pid, pidStart: "1", group: id, runs: [id], claimedAt: "" }),
      );
      const t = new Date(Date.now() - ageSeconds * 1000);
      Deno.utimeSync(path, t, t);
    };
    claim(ids[0], hostname(), 999_999_999, 0); // this host, no such process: dead
    claim(ids[1], "elsewhere", 1234, 600); // another host, no heartbeat for 10 min
    claim(ids[2], "elsewhere", 1234, 0); // another host, fresh heartbeat: alive
    const r = await runScript(FIG7, args(["--claim-timeout=300"]));
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /taking over 1 run\(s\) of worker w-\S+ \(worker w-\S+ \(pid 999999999\) is gone\)/,
    );
    assert.match(r.stderr, /taking over 1 run\(s\) of worker w-\S+ \(no heartbeat for 60\d s\)/);
    assert.match(r.stderr, /3\/4 runs done \(3 trained here\)/);
    const done = [...Deno.readDirSync(join(out, "runs"))].map((e) => e.name);
    assert.ok(!done.includes(`${ids[2]}.json`), "the live claim was taken");
    // Once that worker is silent past the timeout, it is taken over too.
    const t = new Date(Date.now() - 400 * 1000);
    Deno.utimeSync(join(out, "claims", `${ids[2]}.json`), t, t);
    const r2 = await runScript(FIG7, args(["--claim-timeout=300"]));
    assert.match(r2.stderr, /4\/4 runs done \(1 trained here\)/);
  },
});

Deno.test({
  name: "--shard i/n splits the grid statically; the shards together equal one worker",
  ignore: noGpu,
  async fn() {
    const ref = freshDir("shard-ref");
    assert.equal((await runScript(FIG7, tinyFig7(ref))).code, 0);
    const out = freshDir("shards");
    const r0 = await runScript(FIG7, tinyFig7(out, { extra: ["--shard=0/2"] }));
    assert.equal(r0.code, 0, r0.stderr);
    assert.match(r0.stderr, /2\/4 runs done \(2 trained here\)/);
    const r1 = await runScript(FIG7, tinyFig7(out, { extra: ["--shard=1/2"] }));
    assert.match(r1.stderr, /4\/4 runs done \(2 trained here\)/);
    assert.deepEqual(comparableRuns(out), comparableRuns(ref));
  },
});

Deno.test({
  name:
    "damaged result and checkpoint files: one line naming the file, set aside, that run redone, nothing else lost",
  ignore: noGpu,
  async fn() {
    const ref = freshDir("damage-ref");
    const settings = { steps: 30, extra: ["--state-sizes=4"] };
    assert.equal((await runScript(FIG7, tinyFig7(ref, settings))).code, 0);
    const expected = comparableRuns(ref);
    const damages: [string, (bytes: Uint8Array) => Uint8Array][] = [
      ["truncated", (b) => b.subarray(0, Math.floor(b.length / 2))],
      ["emptied", () => new Uint8Array(0)],
      ["garbled header", (b) => {
        const c = b.slice();
        c.fill(0x7b, 12, 40);
        return c;
      }],
      ["random bytes in the tensor data", (b) => {
        const c = b.slice();
        const at = c.length - 20_000 > 1000 ? c.length - 20_000 : Math.floor(c.length / 2);
        c.set(crypto.getRandomValues(new Uint8Array(Math.min(20_000, c.length - at))), at);
        return c;
      }],
    ];
    for (const [what, damage] of damages) {
      // A checkpoint: stop a run once its first checkpoint exists, damage it, run again.
      const out = freshDir("damage-ckpt");
      const child = spawnScript(FIG7, tinyFig7(out, settings));
      const ckpts = join(out, "checkpoints");
      let ckpt: string | undefined;
      for (let i = 0; i < 600 && !ckpt; i++) {
        await new Promise((r) => setTimeout(r, 50));
        try {
          ckpt = [...Deno.readDirSync(ckpts)].map((e) => e.name).find((n) => n.endsWith(".ckpt"));
        } catch { /* not yet */ }
      }
      child.kill("SIGKILL");
      await finish(child);
      assert.ok(ckpt, "no checkpoint was written");
      const path = join(ckpts, ckpt!);
      Deno.writeFileSync(path, damage(Deno.readFileSync(path)));
      const r = await runScript(FIG7, tinyFig7(out, settings));
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      const warn = messageLines(r.stderr).filter((l) => /damaged/.test(l));
      assert.equal(warn.length, 1, `${what}: ${r.stderr}`);
      assert.match(
        warn[0],
        new RegExp(`checkpoints/${ckpt!.replace(".", "\\.")} is damaged \\(.+\\); set aside as .*damaged/`),
      );
      assert.doesNotMatch(r.stderr, /resumed from its checkpoint/);
      assert.deepEqual(comparableRuns(out), expected, what);
    }
    // Result files: truncated, and one with a number changed (its checksum no longer matches).
    const out = freshDir("damage-results");
    assert.equal((await runScript(FIG7, tinyFig7(out, settings))).code, 0);
    const [a, b] = [...Deno.readDirSync(join(out, "runs"))].map((e) => join(out, "runs", e.name)).sort();
    Deno.writeTextFileSync(a, Deno.readTextFileSync(a).slice(0, 100));
    Deno.writeTextFileSync(b, Deno.readTextFileSync(b).replace(/"finalLoss":([0-9.]+)/, '"finalLoss":1$1'));
    const r = await runScript(FIG7, tinyFig7(out, settings));
    assert.equal(r.code, 0, r.stderr);
    const warn = messageLines(r.stderr).filter((l) => /damaged/.test(l));
    assert.equal(warn.length, 2, r.stderr);
    assert.match(warn.join("\n"), /runs\/\w+\.json is damaged \(not valid JSON/);
    assert.match(warn.join("\n"), /runs\/\w+\.json is damaged \(checksum mismatch\)/);
    assert.match(r.stderr, /2\/2 runs done \(2 trained here\)/);
    assert.deepEqual(comparableRuns(out), expected);
    assert.equal([...Deno.readDirSync(join(out, "damaged"))].length, 2);
  },
});

Deno.test("checkRunsFit: a run whose training step or one evaluation row does not fit is refused, by its labels", () => {
  const spec = sampleSpec();
  spec.eval.lengths = [4, 2000];
  const run = { id: runId(spec), spec, labels: { task: "copy", init: "mimetic", len: 8 } };
  const train = estimateTrainingMemory(spec.model, 1, spec.train.batch, 48).peakBytes;
  const evalRow = estimateEvalMemory(spec.model, 1, 1, 2 * 2000 + 2).peakBytes;
  assert.ok(evalRow > train, "the test needs an evaluation row larger than the training step");
  const big = 2 ** 40, limits = { binding: big, buffer: big };
  checkRunsFit([run, run], TASKS, big, limits); // fits: no throw
  assert.throws(
    () => checkRunsFit([run], TASKS, train - 1, limits),
    (e: unknown) =>
      e instanceof RangeError &&
      /^run \(copy mimetic 8\): needs .* for 1 run at batch 4 × T 48 .*: lower --batch$/.test(e.message),
  );
  assert.throws(
    () => checkRunsFit([run], TASKS, Math.floor((train + evalRow) / 2), limits),
    (e: unknown) =>
      e instanceof RangeError &&
      /^run \(copy mimetic 8\), length 2000: evaluation needs .* at one row × T 4002/
        .test(e.message),
  );
  // a training step with a tensor (the logits) larger than the adapter's largest buffer, bound in split parts
  const logits = estimateTrainingMemory(spec.model, 1, spec.train.batch, 48).largestBufferBytes;
  assert.throws(
    () => checkRunsFit([run], TASKS, big, { binding: big, buffer: logits - 1 }),
    (e: unknown) =>
      e instanceof RangeError &&
      /^run \(copy mimetic 8\): one tensor of 1 run at batch 4 × T 48, .*, more than the adapter's largest buffer \(maxBufferSize .*\): lower --batch$/
        .test(e.message),
  );
});

Deno.test("a run finished by another worker after this one read the results is not claimed again", () => {
  // The race: worker A writes run 1's result and removes its claim after worker B read the results but before
  // B claims; B then finds the claim free. B must look again once it holds the claim, and give it back.
  const folder = new ResultsFolder(freshDir("race"));
  folder.create();
  const runs: PlannedRun[] = [3, 4, 5].map((seed) => {
    const spec = { ...sampleSpec(), seed };
    return { id: runId(spec), spec, labels: { seed } };
  });
  Deno.writeTextFileSync(folder.resultPath(runs[0].id), "{}"); // what A wrote (only its existence matters)
  const o = {
    out: folder.root,
    tasks: TASKS,
    groupSize: 8,
    claimTimeout: 60,
    logEvery: 10,
    checkpointEvery: 0,
    label: "test",
    wait: false,
  };
  const got = claimGroup(runs, folder, "B", o, 2 ** 40, { binding: 2 ** 31, buffer: 2 ** 32 });
  assert.deepEqual(got?.map((r) => r.labels.seed), [4, 5]);
  // The finished run's claim was given back; the two others are held, as one group of two.
  assert.throws(() => Deno.statSync(folder.claimPath(runs[0].id)), Deno.errors.NotFound);
  for (const r of runs.slice(1)) {
    const info = JSON.parse(Deno.readTextFileSync(folder.claimPath(r.id)));
    assert.equal(info.worker, "B");
    assert.deepEqual([...info.runs].sort(), [runs[1].id, runs[2].id].sort());
  }
});
