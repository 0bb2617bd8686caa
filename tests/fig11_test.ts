/**
 * Figure 11 and the teacher-layer init, on a tiny 6-layer teacher written here (tests/tiny_checkpoint.ts) whose
 * layers 1 and 4 have the mimetic init (correlated W_C and W_B) and the others the default:
 * 1. Without --teacher, or with layers the teacher does not have: exit 2 with one line.
 * 2. Teacher layer i is copied into every student layer (each run of the run axis its own layer), with the
 *    teacher's embedding rows of the symbols and its final norm.
 * 3. `--scale smoke` end to end: runs.csv, charts, the teacher analysis file, whose W_C/W_B correlations are those of
 *    x_proj's B and C rows read straight from the file (high exactly at the mimetic layers), and whose masks have
 *    ones on the diagonal and zeros above it; `--report` rebuilds the charts from it without computing it again.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { messageLines, runScript } from "./cli_util.ts";
import { writeTinyCheckpoint } from "./tiny_checkpoint.ts";
import { readCsv } from "../lib/study/csv.ts";
import { disposeTree, mapTree, readTensors, type Tensor } from "../lib/core/tensor.ts";
import { readSafetensors } from "../lib/core/safetensors.ts";
import { correlation } from "../lib/nn/init.ts";
import { initRule, type TeacherLayerInitSpec } from "../lib/nn/inits.ts";
import { initLMRuns, type LMConfig } from "../lib/nn/lm.ts";
import { checkpointDigest, loadPretrained, readPretrainedConfig } from "../lib/nn/pretrained.ts";
import { TASKS } from "../tasks/registry.ts";

const FIG11 = new URL("../experiments/fig11.ts", import.meta.url).pathname;
const SYMBOLS = TASKS.copy.symbols!({ variant: "copy", vocab: 8, context: 24, minLen: 2, maxLen: 6 });
const MIMETIC_LAYERS = [1, 4];

async function leavesOf(tree: unknown): Promise<Map<string, Float32Array>> {
  const ts: [string, Tensor][] = [];
  mapTree(tree, (t, path) => ts.push([path, t]));
  const data = await readTensors(ts.map(([, t]) => t));
  return new Map(ts.map(([p], i) => [p, data[i] as Float32Array]));
}

const runOf = (a: Float32Array, K: number, k: number) =>
  a.slice((k * a.length) / K, ((k + 1) * a.length) / K);

function assertOneLine(r: { code: number; stderr: string }, pattern: RegExp) {
  assert.equal(r.code, 2, `exit code ${r.code}: ${r.stderr}`);
  const lines = messageLines(r.stderr).filter((l) => !/CPU adapter/.test(l));
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "printed a stack trace");
}

Deno.test("fig11: without --teacher, exit 2 with one line saying what to put there", async () => {
  assertOneLine(
    await runScript(FIG11, ["--scale", "smoke"]),
    /^fig11: --teacher DIR is needed: .*state-spaces\/mamba-370m-hf.*nothing is downloaded/,
  );
  assertOneLine(
    await runScript(FIG11, ["--scale", "smoke", "--teacher", "/nonexistent/teacher"]),
    /^fig11: --teacher: \/nonexistent\/teacher: no such folder/,
  );
});

Deno.test({
  name: "fig11: teacher layers and map layers the teacher does not have exit 2 with one line",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 6, dModel: 16 });
    const base = ["--scale", "smoke", "--teacher", dir, "--list"];
    assertOneLine(
      await runScript(FIG11, [...base, "--teacher-layers", "2,6"]),
      /--teacher-layers: expected "all" or layers in 0\.\.5 of the teacher, got "6"/,
    );
    assertOneLine(await runScript(FIG11, [...base, "--teacher-layers", "1,1"]), /listed twice/);
    assertOneLine(await runScript(FIG11, [...base, "--map-layers", "x"]), /--map-layers: .*got "x"/);
    assertOneLine(await runScript(FIG11, [...base, "--baselines", "none,default"]), /--baselines: "none"/);
    const ok = await runScript(FIG11, [...base, "--teacher-layers", "0,3", "--baselines", "none"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim().split("\n").length, 2);
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "teacherLayer init: every student layer is teacher layer i; embedding and final norm are the teacher's",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 6, dModel: 16, mimeticLayers: MIMETIC_LAYERS });
    const teacher = readPretrainedConfig(dir, { symbols: SYMBOLS }).cfg;
    const M = 3;
    const student: LMConfig = { ...teacher, layers: teacher.layers.slice(0, M) };
    const sha256 = checkpointDigest(dir);
    const specOf = (layer: number): TeacherLayerInitSpec => ({
      kind: "teacherLayer",
      dir,
      sha256,
      symbols: SYMBOLS,
      layer,
    });
    const picks = [4, 0];
    const presets = await Promise.all(picks.map((i) => initRule(specOf(i)).params!(specOf(i), student)));
    const { params, consts } = initLMRuns(student, presets.map((preset) => ({ preset })));
    const got = await leavesOf(params);
    const t = await loadPretrained(dir, { symbols: SYMBOLS });
    const want = await leavesOf(t.params);
    let compared = 0;
    for (const [path, a] of got) {
      picks.forEach((i, k) => {
        const teacherPath = path.replace(/^layers\[\d+\]/, `layers[${i}]`);
        assert.deepEqual(
          runOf(a, 2, k),
          want.get(teacherPath),
          `run ${k}: ${path} is not the teacher's ${teacherPath}`,
        );
        compared++;
      });
    }
    assert.equal(compared, 2 * got.size);
    assert.ok([...got.keys()].filter((p) => p.startsWith(`layers[${M - 1}].mixer`)).length >= 10);
    const c = await leavesOf(consts);
    assert.deepEqual(Array.from(c.get("layers[2].aScale")!), [1, 1]);
    // Layers the teacher lacks, and students that are not the teacher's shape, are refused.
    await assert.rejects(
      () => initRule(specOf(6)).params!(specOf(6), student),
      /teacherLayer 6 is not a layer/,
    );
    await assert.rejects(
      () => initRule(specOf(0)).params!(specOf(0), { ...student, normEps: 1e-6 }),
      /student differs from the teacher with 3 layers \(model\.normEps: 0\.000001 ≠ 0\.00001\)/,
    );
    disposeTree([params, consts, t.params, t.consts]);
    Deno.removeSync(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "fig11 --scale smoke: runs, charts and the teacher analysis (W_C/W_B correlation, masks, maps per layer)",
  ignore: noGpu,
  async fn() {
    const dir = Deno.makeTempDirSync(), out = Deno.makeTempDirSync();
    await writeTinyCheckpoint(dir, { layers: 6, dModel: 16, mimeticLayers: MIMETIC_LAYERS });
    const t0 = performance.now();
    const r = await runScript(FIG11, ["--scale", "smoke", "--teacher", dir, "--out", out]);
    console.log(`fig11 smoke: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /analysis teacher computed/);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, (6 + 2) * 2, "6 teacher layers + 2 baselines, 2 lengths each");
    const layers = rows.filter((x) => x["spec.init.kind"] === "teacherLayer").map((x) =>
      Number(x["spec.init.layer"])
    );
    assert.deepEqual([...new Set(layers)].sort(), [0, 1, 2, 3, 4, 5]);
    assert.ok(rows.every((x) => x["spec.model.layers.*.kind"] === "mamba1"));
    for (const f of ["fig11a", "fig11a_lengths", "fig11b", "fig11c", "fig11d", "fig11e"]) {
      assert.ok(Deno.statSync(join(out, `${f}.png`)).size > 0, `${f}.png missing`);
    }
    assert.ok(Deno.statSync(join(out, "teacher_layers.csv")).size > 0);

    // The analysis against the file: x_proj (R + 2N, E) rows [R, R+N) are W_B, [R+N, R+2N) W_C.
    const a = JSON.parse(Deno.readTextFileSync(join(out, "analyses", "teacher.json")));
    const v = a.value as {
      T: number;
      layers: { layer: number; corrCB: number; mask: number[]; map: number[] }[];
    };
    assert.equal(v.layers.length, 6);
    const file = await readSafetensors(join(dir, "model.safetensors"));
    const cfg = JSON.parse(Deno.readTextFileSync(join(dir, "config.json")));
    const N = cfg.state_size, R = cfg.time_step_rank, E = cfg.expand * cfg.hidden_size;
    for (const s of v.layers) {
      const xProj = file.f32(`backbone.layers.${s.layer}.mixer.x_proj.weight`);
      const wB = xProj.subarray(R * E, (R + N) * E), wC = xProj.subarray((R + N) * E, (R + 2 * N) * E);
      const want = correlation(wC, wB);
      console.log(`layer ${s.layer}: corr(W_C, W_B) ${s.corrCB} (from the file ${want.toFixed(4)})`);
      assert.ok(Math.abs(s.corrCB - want) < 1e-3, `layer ${s.layer}: ${s.corrCB} vs ${want}`);
      assert.equal(Math.abs(want) > 0.5, MIMETIC_LAYERS.includes(s.layer), `layer ${s.layer}`);
      const T = v.T;
      assert.equal(s.mask.length, T * T);
      assert.equal(s.map.length, T * T);
      for (let i = 0; i < T; i++) {
        assert.ok(Math.abs(s.mask[i * T + i] - 1) < 1e-3, `mask[${i}, ${i}] = ${s.mask[i * T + i]}`);
        for (let j = i + 1; j < T; j++) assert.equal(s.mask[i * T + j], 0);
        for (let j = 0; j < i; j++) assert.ok(s.mask[i * T + j] >= 0 && s.mask[i * T + j] <= 1);
      }
    }
    const table = readCsv(join(out, "teacher_layers.csv"));
    assert.deepEqual(table.map((x) => Number(x.corr_cb)), v.layers.map((s) => s.corrCB));

    // --report: no GPU work, the stored analysis is used again.
    const rep = await runScript(FIG11, ["--scale", "smoke", "--teacher", dir, "--out", out, "--report"]);
    assert.equal(rep.code, 0, rep.stderr);
    assert.doesNotMatch(rep.stderr, /analysis teacher computed/);
    assert.ok(Deno.readTextFileSync(join(out, "index.html")).includes("fig11d.svg"));
    for (const d of [dir, out]) Deno.removeSync(d, { recursive: true });
  },
});
