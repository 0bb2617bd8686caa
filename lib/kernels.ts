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
] as const;

/** A kernel file's name. */
export type KernelFile = (typeof KERNEL_FILES)[number];

const sources = new Map<string, string>();
let loading: Promise<void> | null = null;

/** Loads every kernel source (idempotent). */
export function loadKernels(): Promise<void> {
  if (!loading) {
    loading = Promise.all(KERNEL_FILES.map(async (file) => {
      const url = new URL(`../kernels/${file}`, import.meta.url);
      const res = await fetch(url);
      if (!res.ok) throw new Error(`could not load kernel ${url}: HTTP ${res.status}`);
      sources.set(file, await res.text());
    })).then(() => {});
  }
  return loading;
}

/**
 * The source of a kernel file, with `{{NAME}}` placeholders replaced from `subst`.
 * @throws if the kernels are not loaded (call `initGpu()` first).
 */
export function kernelSource(file: KernelFile, subst: Record<string, string | number> = {}): string {
  const src = sources.get(file);
  if (src === undefined) throw new Error(`kernel ${file} is not loaded: await initGpu() first`);
  return src.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!(name in subst)) throw new Error(`kernel ${file}: no value for placeholder {{${name}}}`);
    return String(subst[name]);
  });
}
