/**
 * A stand-in worker for testing the Slurm path without a GPU: the claim protocol of a sweep shared by many
 * processes, on a list of named jobs that only sleep. Each worker walks the list and, for each name, tries to
 * create `OUT/claims/NAME` exclusively (create-if-absent, atomic on POSIX and NFSv3+): the one that creates it
 * owns the job, sleeps, and writes `OUT/done/NAME` atomically (tmp file + rename); the others skip it.
 *
 *   deno run -A slurm/claim_demo.ts --out DIR --worker-id ID [--jobs 12] [--sleep-ms 500] [--shard i/n]
 *   deno run -A slurm/claim_demo.ts --check --out DIR [--jobs 12]
 *
 * `--check` verifies a finished folder: every job done exactly once, by the worker that claimed it, and no claim
 * or result left over that names a job not in the list; it prints who did what and exits 1 on any problem.
 * `--shard i/n` (0 ≤ i < n) makes a worker consider only jobs whose index is i mod n (a static split, on top of
 * the claims).
 *
 * Through Slurm: `slurm/test_array.sh slurm/claim_demo.ts --out /tmp/claims`, then the `--check` line above.
 */
import { join } from "node:path";
import { helpText, parseFlags, runMain, UsageError, writeJsonAtomic } from "../mod.ts";

const FLAGS = {
  out: { type: "string", help: "The shared folder (claims/ and done/ go under it)." },
  workerId: { type: "string", help: "This worker's name, written into its claims and results." },
  jobs: { type: "number", integer: true, min: 1, default: 12, help: "How many jobs the list has." },
  sleepMs: { type: "number", integer: true, min: 0, default: 500, help: "How long one job takes." },
  shard: { type: "string", help: "i/n: consider only jobs whose index is i mod n." },
  check: { type: "boolean", help: "Verify a finished folder instead of working on it." },
} as const;

/** The job list: job00, job01, ... */
function jobNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `job${String(i).padStart(2, "0")}`);
}

function parseShard(text: string | undefined): { index: number; count: number } {
  if (text === undefined) return { index: 0, count: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new UsageError(`--shard: expected i/n with 0 ≤ i < n, got "${text}"`);
  }
  return { index, count };
}

/** Creates `path` only if absent; true when this call created it (the claim is ours). */
function claim(path: string, owner: string): boolean {
  try {
    const file = Deno.openSync(path, { write: true, createNew: true });
    try {
      file.writeSync(new TextEncoder().encode(owner + "\n"));
    } finally {
      file.close();
    }
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    throw err;
  }
}

async function work(
  out: string,
  workerId: string,
  names: string[],
  sleepMs: number,
  shard: string | undefined,
) {
  const { index, count } = parseShard(shard);
  Deno.mkdirSync(join(out, "claims"), { recursive: true });
  Deno.mkdirSync(join(out, "done"), { recursive: true });
  const mine: string[] = [];
  for (const [i, name] of names.entries()) {
    if (i % count !== index) continue;
    if (!claim(join(out, "claims", name), workerId)) continue;
    const startedAt = new Date().toISOString();
    await new Promise((r) => setTimeout(r, sleepMs));
    writeJsonAtomic(join(out, "done", name), {
      name,
      workerId,
      host: Deno.hostname(),
      pid: Deno.pid,
      startedAt,
      finishedAt: new Date().toISOString(),
    });
    mine.push(name);
  }
  console.log(
    `worker ${workerId} (pid ${Deno.pid}) did ${mine.length} of ${names.length}: ${mine.join(" ")}`,
  );
}

function listDir(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/** Every job done exactly once by its claimer; returns the problems found (none: the split was right). */
function check(out: string, names: string[]): string[] {
  const problems: string[] = [];
  const known = new Set(names);
  const claims = listDir(join(out, "claims")), done = listDir(join(out, "done"));
  for (const f of [...claims, ...done]) {
    if (!known.has(f)) {
      problems.push(`unexpected file ${f} (a job not in the list, or a tmp file left behind)`);
    }
  }
  const byWorker = new Map<string, string[]>();
  for (const name of names) {
    const claimText = (() => {
      try {
        return Deno.readTextFileSync(join(out, "claims", name)).trim();
      } catch {
        return null;
      }
    })();
    if (claimText === null) {
      problems.push(`${name}: never claimed`);
      continue;
    }
    let result: { name?: string; workerId?: string };
    try {
      result = JSON.parse(Deno.readTextFileSync(join(out, "done", name)));
    } catch {
      problems.push(`${name}: claimed by ${claimText} but has no readable result`);
      continue;
    }
    if (result.name !== name || result.workerId !== claimText) {
      problems.push(`${name}: claimed by ${claimText} but the result says ${JSON.stringify(result)}`);
    }
    byWorker.set(claimText, [...(byWorker.get(claimText) ?? []), name]);
  }
  for (const [worker, jobs] of [...byWorker].sort()) {
    console.log(`${worker}: ${jobs.length} jobs: ${jobs.join(" ")}`);
  }
  return problems;
}

if (import.meta.main) {
  await runMain("claim_demo", async () => {
    const flags = parseFlags(Deno.args, FLAGS);
    if (flags.help) {
      console.log(
        helpText("deno run -A slurm/claim_demo.ts --out DIR (--worker-id ID | --check) [flags]", FLAGS),
      );
      return;
    }
    if (flags.out === undefined) throw new UsageError("--out DIR is required");
    const names = jobNames(flags.jobs!);
    if (flags.check) {
      const problems = check(flags.out, names);
      for (const p of problems) console.error(`claim_demo: ${p}`);
      if (problems.length > 0) Deno.exit(1);
      console.log(
        `claim_demo: all ${names.length} jobs done exactly once, each by the worker that claimed it`,
      );
      return;
    }
    if (flags.workerId === undefined) throw new UsageError("--worker-id ID is required (or --check)");
    await work(flags.out, flags.workerId, names, flags.sleepMs!, flags.shard);
  });
}
