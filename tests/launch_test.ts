/**
 * `deno task sweep` (lib/study/launch.ts): one worker per GPU, each seeing only its own /dev/nvidiaN (tried on
 * stand-in device files: a worker must read its own and find /dev/null over the others), N plain workers on one
 * folder giving the same runs.csv as one worker (also after a --fresh, applied once), and the script's bad flags
 * reported once with exit 2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { canUnshare, comparableRuns, FIG7, messageLines, runScript, tinyFig7 } from "./cli_util.ts";

const LAUNCH = new URL("../lib/study/launch.ts", import.meta.url).pathname;
const tmp = Deno.makeTempDirSync({ prefix: "mimetic_launch_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

Deno.test({
  name: "--gpus all: each worker sees only its own GPU node; the others are /dev/null",
  ignore: !canUnshare,
  async fn() {
    const dev = join(tmp, "dev");
    Deno.mkdirSync(dev);
    for (const i of [0, 1, 2]) Deno.writeTextFileSync(join(dev, `nvidia${i}`), `gpu${i}`);
    const probe = `for f in ${dev}/nvidia*; do printf '%s=%s ' "$(basename $f)" "$(cat $f)"; done; echo`;
    const r = await runScript(LAUNCH, ["--gpus", "all", "--devices", dev, "--", "sh", "-c", probe]);
    assert.equal(r.code, 0, r.stderr);
    for (const i of [0, 1, 2]) {
      const line = r.stderr.split("\n").find((l) => l.startsWith(`[gpu${i}] nvidia`));
      const seen = Object.fromEntries(line!.slice(7).trim().split(" ").map((kv) => kv.split("=")));
      assert.deepEqual(
        seen,
        Object.fromEntries([0, 1, 2].map((j) => [`nvidia${j}`, j === i ? `gpu${i}` : ""])),
      );
    }
    // The host's files are untouched.
    assert.equal(Deno.readTextFileSync(join(dev, "nvidia1")), "gpu1");
    const bad = await runScript(LAUNCH, ["--gpus", "0,7", "--devices", dev, "--", "true"]);
    assert.equal(bad.code, 2);
    assert.match(messageLines(bad.stderr)[0], /--gpus: .*nvidia7 does not exist \(found: 0, 1, 2\)/);
  },
});

Deno.test({
  name: "--workers 2 on one folder gives the runs.csv of one worker; bad script flags are reported once",
  ignore: noGpu,
  async fn() {
    const ref = join(tmp, "ref");
    assert.equal((await runScript(FIG7, tinyFig7(ref, { seeds: 2, extra: ["--group-size=2"] }))).code, 0);
    const out = join(tmp, "two");
    const r = await runScript(LAUNCH, [
      "--workers",
      "2",
      "--",
      FIG7,
      ...tinyFig7(out, { seeds: 2, extra: ["--group-size=2"] }),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[w0\] fig7: training runs/);
    assert.match(r.stderr, /\[w1\] fig7: training runs/);
    assert.deepEqual(comparableRuns(out), comparableRuns(ref));
    // --fresh empties the folder once, before the workers start (not once per worker): every run is trained
    // again, exactly once between the two.
    const again = await runScript(LAUNCH, [
      "--workers",
      "2",
      "--",
      FIG7,
      ...tinyFig7(out, { seeds: 2, extra: ["--group-size=2"] }),
      "--fresh",
    ]);
    assert.equal(again.code, 0, again.stderr);
    const trainedHere = [...again.stderr.matchAll(/runs done \((\d+) trained here\)/g)].map((m) =>
      Number(m[1])
    );
    assert.equal(trainedHere.length, 2, again.stderr);
    assert.equal(trainedHere[0] + trainedHere[1], 8, again.stderr);
    assert.doesNotMatch(again.stderr, /\[w[01]\] .*--fresh/);
    assert.deepEqual(comparableRuns(out), comparableRuns(ref));
    const bad = await runScript(LAUNCH, [
      "--workers",
      "2",
      "--",
      FIG7,
      ...tinyFig7(join(tmp, "bad")),
      "--steps=0",
    ]);
    assert.equal(bad.code, 2);
    assert.deepEqual(messageLines(bad.stderr), ["fig7: --steps: expected a value ≥ 1, got 0"]);
  },
});

Deno.test("slurm/sweep.sbatch refuses --fresh (each task would apply it) with one line and exit 2", async () => {
  const sbatch = new URL("../slurm/sweep.sbatch", import.meta.url).pathname;
  const out = await new Deno.Command("bash", {
    args: [sbatch, FIG7, "--scale=smoke", "--fresh", `--out=${join(tmp, "never")}`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 2, stderr);
  assert.equal(messageLines(stderr).length, 1, stderr);
  assert.match(stderr, /^sweep\.sbatch: --fresh would run in every task .*--fresh --list/);
  assert.throws(() => Deno.statSync(join(tmp, "never")), Deno.errors.NotFound);
});
