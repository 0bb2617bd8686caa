/**
 * `deno task fig7` as a user runs it: bad flags exit with code 2 and a one-line message; a tiny end-to-end run
 * writes its CSVs, charts and index.html; a rerun skips finished state sizes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { noGpu } from "./harness.ts";
import { readCsv } from "../lib/study/csv.ts";

const script = new URL("../experiments/fig7.ts", import.meta.url).pathname;

async function fig7(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("fig7: bad flags exit 2 with a one-line message naming the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /bogus/],
    [["--steps", "abc"], /--steps: expected a number, got "abc"/],
    [["--scale", "huge"], /--scale: expected one of smoke, quick, paper/],
    [["--head-dim", "7", "--d-model", "16"], /--head-dim 7 must divide/],
    [["--steps", "0"], /--steps: expected a value ≥ 1/],
  ];
  for (const [args, pattern] of cases) {
    const r = await fig7(args);
    assert.equal(r.code, 2, `${args.join(" ")} gave exit code ${r.code}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n").filter((l) => !/XDG_RUNTIME_DIR|notice|CPU adapter/.test(l));
    assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
    assert.match(lines[0], pattern);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "printed a stack trace");
  }
});

Deno.test("fig7 --help lists the flags", async () => {
  const r = await fig7(["--help"]);
  assert.equal(r.code, 0);
  for (const flag of ["--scale", "--state-sizes", "--lrs", "--seeds", "--fresh", "--out"]) {
    assert.ok(r.stdout.includes(flag));
  }
});

Deno.test({
  name: "fig7: a tiny run writes runs.csv, summaries, charts and index.html; a rerun skips it",
  ignore: noGpu,
  async fn() {
    const out = await Deno.makeTempDir();
    const tiny = [
      "--scale",
      "smoke",
      "--out",
      out,
      "--state-sizes",
      "4",
      "--steps",
      "4",
      "--batch",
      "2",
      "--d-model",
      "16",
      "--head-dim",
      "8",
      "--layers",
      "1",
      "--context",
      "20",
      "--min-train-len",
      "2",
      "--train-len",
      "4",
      "--eval-lengths",
      "2,4",
      "--eval-samples",
      "4",
      "--log-every",
      "2",
      "--checkpoint-every",
      "2",
      "--vocab",
      "5",
    ];
    const r = await fig7(tiny);
    assert.equal(r.code, 0, r.stderr);
    const rows = readCsv(join(out, "runs.csv"));
    assert.equal(rows.length, 2 * 2, "expected 2 inits × 2 lengths rows");
    for (const row of rows) {
      assert.ok(Number(row.string_acc) >= 0 && Number(row.string_acc) <= 1);
      assert.equal(row.steps, "4");
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
      assert.ok((await Deno.stat(join(out, f))).size > 0, `${f} missing`);
    }
    const again = await fig7(tiny);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /N=4 already done/);
    assert.equal(readCsv(join(out, "runs.csv")).length, rows.length);
    await Deno.remove(out, { recursive: true });
  },
});
