/**
 * WGSL sources from `kernels/`, loaded once at `initGpu()` through `fetch(new URL(..., import.meta.url))`, so they
 * load the same way from a file checkout and from a URL import. Ops then take them synchronously.
 * @module
 */

/** Every kernel file; add new ones here. */
export const KERNEL_FILES = [
  "unary.wgsl",
  "binary.wgsl",
  "reduce.wgsl",
  "reduce_backward.wgsl",
  "ssd_scan_fwd.wgsl",
  "ssd_scan_bwd.wgsl",
  "ssd_scan_bwd_recompute.wgsl",
  "ssd_scan_reduce.wgsl",
  "norm.wgsl",
  "conv1d.wgsl",
  "matmul.wgsl",
  "adamw.wgsl",
  "grad_norm.wgsl",
  "embedding.wgsl",
  "softmax.wgsl",
  "cross_entropy.wgsl",
  "selective_scan_fwd.wgsl",
  "selective_scan_bwd_fwd.wgsl",
  "selective_scan_bwd.wgsl",
  "attention_map.wgsl",
  "selective_scan_parts.wgsl",
  "ssd_scan_parts.wgsl",
  "gated_norm.wgsl",
  "norm_parts.wgsl",
  "ssd_chunk_parts.wgsl",
  "ssd_chunk_prep.wgsl",
  "ssd_chunk_cb.wgsl",
  "ssd_chunk_state.wgsl",
  "ssd_chunk_out.wgsl",
  "ssd_chunk_out4.wgsl",
  "ssd_chunk_r.wgsl",
  "ssd_chunk_dbc.wgsl",
  "ssd_chunk_dbc4.wgsl",
  "ssd_chunk_decay.wgsl",
  "concat.wgsl",
] as const;

/** Data files next to the kernels (JSON), loaded with them: tuning tables measured per adapter. */
export const KERNEL_DATA_FILES = ["matmul_tuning.json"] as const;

/** A kernel file's name. */
export type KernelFile = (typeof KERNEL_FILES)[number];

const sources = new Map<string, string>();
let loading: Promise<void> | null = null;

/** Loads every kernel source and data file (idempotent). */
export function loadKernels(): Promise<void> {
  if (!loading) {
    loading = Promise.all([...KERNEL_FILES, ...KERNEL_DATA_FILES].map(async (file) => {
      const url = new URL(`../../kernels/${file}`, import.meta.url);
      const res = await fetch(url);
      if (!res.ok) throw new Error(`could not load kernel ${url}: HTTP ${res.status}`);
      sources.set(file, await res.text());
    })).then(() => {});
  }
  return loading;
}

function loaded(file: string): string {
  const src = sources.get(file);
  if (src === undefined) throw new Error(`kernel ${file} is not loaded: await initGpu() first`);
  return src;
}

/**
 * A data file's parsed JSON (see `KERNEL_DATA_FILES`).
 * @throws if the kernels are not loaded (call `initGpu()` first).
 */
export function kernelData(file: (typeof KERNEL_DATA_FILES)[number]): unknown {
  return JSON.parse(loaded(file));
}

/**
 * A part of a parts file: the lines between `//@part NAME ...` and `//@endpart`, with its `{{ARG}}`s replaced by
 * the `ARG=value` words of the `//@use` line.
 */
function part(user: string, file: string, name: string, args: string): string {
  const src = loaded(file);
  const m = new RegExp(`^//@part ${name}\\b[^\\n]*\\n([\\s\\S]*?)^//@endpart$`, "m").exec(src);
  if (!m) throw new Error(`kernel ${user}: no part ${name} in ${file}`);
  let body = m[1];
  for (const word of args.trim().split(/\s+/).filter(Boolean)) {
    const [key, value] = word.split("=");
    if (value === undefined) {
      throw new Error(`kernel ${user}: //@use ${file} ${name}: ${word} is not KEY=value`);
    }
    body = body.replaceAll(`{{${key}}}`, value);
  }
  return body;
}

/**
 * The source of a kernel file: each `//@use PARTS_FILE PART [KEY=value ...]` line replaced by that part of a
 * parts file (WGSL has no includes; the kernels of one family share code this way), then `{{NAME}}` placeholders
 * replaced from `subst`.
 * @throws if the kernels are not loaded (call `initGpu()` first), or a part or placeholder value is missing.
 */
export function kernelSource(file: KernelFile, subst: Record<string, string | number> = {}): string {
  // Cached: ops build their kernel per call, and the substitution costs more than recording the dispatch; the
  // same string object each time also lets the pipeline cache look it up without rehashing it.
  let byFile = sourceCache.get(file);
  if (!byFile) sourceCache.set(file, byFile = new Map());
  const key = JSON.stringify(subst);
  let code = byFile.get(key);
  if (code === undefined) byFile.set(key, code = substitute(file, subst));
  return code;
}

const sourceCache = new Map<string, Map<string, string>>();

function substitute(file: KernelFile, subst: Record<string, string | number>): string {
  return loaded(file)
    .replace(
      /^[ \t]*\/\/@use (\S+) (\w+)(.*)\n/gm,
      (_, parts: string, name: string, args: string) => part(file, parts, name, args),
    )
    .replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
      if (!(name in subst)) throw new Error(`kernel ${file}: no value for placeholder {{${name}}}`);
      return String(subst[name]);
    });
}
