/**
 * The GPU runtime: one WebGPU device per process, a pipeline cache, a buffer pool, and a recorder that puts a
 * step's dispatches into one command encoder and one compute pass, submitted in chunks.
 *
 * Why this shape: a dispatch inside an open compute pass costs ~11 µs on the H100 while a submit + readback round
 * trip costs ~12 ms, so the runtime never submits per op and never reads back unless asked (`readBuffer`).
 *
 * Hazards it handles:
 * - Uniform parameters are written into a CPU-side arena and uploaded with one `writeBuffer` just before the
 *   submit that uses them, so a later dispatch can never overwrite the parameters of an earlier one.
 * - `queue.writeBuffer` runs at the next submit, before every command recorded until then. So a buffer released
 *   since the last submit (unsubmitted commands may still read it) is handed out again only to tensors that the GPU
 *   writes (op outputs, `empty`), whose writes are ordered after those commands; a tensor filled by an upload
 *   (`tensor`, `zeros`) takes a buffer released before the last submit. Buffers freed during a step (the backward
 *   frees activations as it goes) are so reused within the same step.
 *
 * Per-dispatch CPU cost: creating a bind group is most of what recording a dispatch costs (~15 µs on llvmpipe, of
 * ~20 µs in all), so bind groups are cached by pipeline layout and buffer identity (and bound range), and the uniform is bound with a
 * dynamic offset into the arena (one bind group serves every slot). A training step repeats the same dispatches
 * on the same pooled buffers, so from its second step on nearly every bind group is a cache hit. A cached bind
 * group refers to GPUBuffer objects, never to tensors: a pooled buffer handed to another tensor is still the same
 * buffer, so the bind group stays right; a destroyed buffer (`trimPool`) takes its bind groups with it. Identical
 * uniform contents within a chunk share one slot.
 * @module
 */
import { loadKernels } from "./kernels.ts";

/** Thrown when no WebGPU adapter or device can be had (no GPU, no driver, or WebGPU disabled). */
export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

/** Facts about the device in use. */
export interface DeviceInfo {
  description: string;
  /** True for CPU rasterisers (llvmpipe, lavapipe, SwiftShader): about 1000× slower than a GPU. */
  isCpu: boolean;
  limits: GPUSupportedLimits;
  features: string[];
}

let devicePromise: Promise<GPUDevice> | null = null;
let device: GPUDevice | null = null;
let deviceInfo: DeviceInfo | null = null;

/**
 * Returns the process's single device, creating it on first use with the adapter's real limits.
 * @throws {GpuUnavailableError} when no adapter or device is available.
 * @example
 * ```ts
 * import { getDevice } from "./runtime.ts";
 * const device = await getDevice();
 * console.log(device.limits.maxStorageBufferBindingSize > 0);
 * ```
 */
export function getDevice(): Promise<GPUDevice> {
  if (!devicePromise) devicePromise = createDevice();
  return devicePromise;
}

async function createDevice(): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new GpuUnavailableError("WebGPU is not available in this runtime (navigator.gpu is missing)");
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuUnavailableError(
      "no WebGPU adapter found (no GPU driver; on Linux without a GPU install Mesa, e.g. mesa-vulkan-drivers)",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (
    const name of [
      "maxStorageBufferBindingSize",
      "maxBufferSize",
      "maxComputeWorkgroupStorageSize",
      "maxComputeInvocationsPerWorkgroup",
      "maxComputeWorkgroupSizeX",
      "maxComputeWorkgroupSizeY",
      "maxComputeWorkgroupSizeZ",
      "maxComputeWorkgroupsPerDimension",
      "maxStorageBuffersPerShaderStage",
      "maxBindingsPerBindGroup",
    ] as const
  ) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const features: GPUFeatureName[] = [];
  if (adapter.features.has("timestamp-query")) features.push("timestamp-query");
  let dev: GPUDevice;
  try {
    dev = await adapter.requestDevice({ requiredLimits, requiredFeatures: features });
  } catch (e) {
    throw new GpuUnavailableError(`could not create a WebGPU device: ${(e as Error).message}`);
  }
  const description = adapter.info.description || adapter.info.device || adapter.info.vendor || "unknown";
  deviceInfo = {
    description,
    isCpu: isCpuAdapter(adapter.info.isFallbackAdapter, description),
    limits: dev.limits,
    features: [...dev.features],
  };
  dev.addEventListener("uncapturederror", (event) => {
    console.error(`WebGPU error: ${(event as GPUUncapturedErrorEvent).error.message}`);
  });
  device = dev;
  return dev;
}

/**
 * Asks for the adapter without creating a device (cheap; no kernels compiled, no memory taken): what `initGpu`
 * would run on. Null when there is none.
 */
export async function probeAdapter(): Promise<{ description: string; isCpu: boolean } | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const description = adapter.info.description || adapter.info.device || adapter.info.vendor || "unknown";
  return { description, isCpu: isCpuAdapter(adapter.info.isFallbackAdapter, description) };
}

function isCpuAdapter(fallback: boolean, description: string): boolean {
  return fallback || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(description);
}

/** The device, synchronously; `initGpu()` (or `getDevice()`) must have been awaited once before. */
export function gpu(): GPUDevice {
  if (!device) throw new GpuUnavailableError("the GPU is not initialised: await initGpu() first");
  return device;
}

/**
 * Initialises the device once and returns facts about it.
 * @example
 * ```ts
 * import { initGpu } from "./runtime.ts";
 * const info = await initGpu();
 * console.log(info.description);
 * ```
 */
export async function initGpu(): Promise<DeviceInfo> {
  await Promise.all([getDevice(), loadKernels()]);
  return deviceInfo!;
}

/** Facts about the device; `initGpu()` must have been awaited. */
export function gpuInfo(): DeviceInfo {
  if (!deviceInfo) throw new GpuUnavailableError("the GPU is not initialised: await initGpu() first");
  return deviceInfo;
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels and pipelines

/** Access of one storage binding, in binding order after the uniform at binding 0. */
export type Access = "read" | "read_write";

/**
 * A compute kernel: WGSL source with one entry point. Binding 0 of group 0 is the uniform `Params` struct (only
 * 4-byte scalars, in the order the dispatch passes them); bindings 1.. are storage buffers with the given access.
 */
export interface Kernel {
  /** A short name for error messages and profiles. */
  name: string;
  code: string;
  entry?: string;
  bindings: readonly Access[];
  /** Pipeline-overridable constants (WGSL `override`). */
  constants?: Record<string, number>;
}

interface PipelineEntry {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** A small integer naming the layout in bind group cache keys. */
  layoutId: number;
}

/**
 * Pipelines by kernel code, then by entry point, constants and bindings. Two levels because the code is long:
 * kernel sources come from `kernelSource`'s cache, the same string object each time, whose hash V8 keeps, so the
 * lookup never rehashes or concatenates the source (that alone cost ~1 µs a dispatch).
 */
const pipelineCache = new Map<string, Map<string, PipelineEntry>>();
let pipelineTotal = 0;
let pipelineMs = 0; // wall time spent creating them

function pipelineFor(kernel: Kernel): PipelineEntry {
  let byRest = pipelineCache.get(kernel.code);
  if (!byRest) pipelineCache.set(kernel.code, byRest = new Map());
  const rest = `${kernel.entry ?? "main"}|${kernel.constants ? JSON.stringify(kernel.constants) : ""}|${
    kernel.bindings.join(",")
  }`;
  let hit = byRest.get(rest);
  if (hit) return hit;
  const dev = gpu();
  const layout = dev.createBindGroupLayout({
    label: kernel.name,
    entries: [
      {
        binding: 0,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true },
      },
      ...kernel.bindings.map((access, i) => ({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: access === "read" ? "read-only-storage" as const : "storage" as const },
      })),
    ],
  });
  // (timed: the driver compiles here, synchronously, which can cost a run's first steps seconds)
  const start = performance.now();
  const module = dev.createShaderModule({ label: kernel.name, code: kernel.code });
  const pipeline = dev.createComputePipeline({
    label: kernel.name,
    layout: dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: kernel.entry ?? "main", constants: kernel.constants },
  });
  pipelineMs += performance.now() - start;
  hit = { pipeline, layout, layoutId: ++pipelineTotal };
  byRest.set(rest, hit);
  return hit;
}

/** Number of distinct pipelines compiled so far (for tests of the cache). */
export function pipelineCount(): number {
  return pipelineTotal;
}

// ---------------------------------------------------------------------------------------------------------------
// Buffer pool

const BUFFER_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const freeBuffers = new Map<number, GPUBuffer[]>();
/** Buffers released since the last submit, by size: reusable only for GPU-written contents (see the hazards). */
let releasedSinceSubmit = new Map<number, GPUBuffer[]>();
let liveBytes = 0;
let pooledBytes = 0;
let peakLiveBytes = 0;
let allocatedBytes = 0;
let peakAllocatedBytes = 0;

/**
 * The bytes the pool allocates for a request of `bytes`: multiples of 256 B up to 4 KiB, then powers of two up to
 * 64 MiB, then multiples of 16 MiB (exported for memory estimates, which count what the pool really holds).
 */
export function bucketSize(bytes: number): number {
  const b = Math.max(bytes, 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  if (b <= 64 << 20) return 2 ** Math.ceil(Math.log2(b));
  return Math.ceil(b / (16 << 20)) * (16 << 20);
}

/**
 * Takes a storage buffer of at least `bytes` bytes from the pool (contents undefined). `upload`: the caller fills it
 * with `writeBuffer` before any GPU command writes it, so it must not be a buffer released since the last submit.
 */
export function acquireBuffer(bytes: number, upload = false): GPUBuffer {
  const size = bucketSize(bytes);
  const lists = upload ? [freeBuffers.get(size)] : [releasedSinceSubmit.get(size), freeBuffers.get(size)];
  for (const list of lists) {
    if (list && list.length > 0) {
      pooledBytes -= size;
      countLive(size);
      return list.pop()!;
    }
  }
  const max = gpu().limits.maxBufferSize;
  if (size > max) throw new RangeError(`buffer of ${bytes} bytes exceeds the device's maxBufferSize ${max}`);
  const buffer = gpu().createBuffer({ size, usage: BUFFER_USAGE });
  bufferId(buffer); // ids in creation order: the pool hands out the oldest free buffer first
  countLive(size);
  allocatedBytes += size;
  if (allocatedBytes > peakAllocatedBytes) peakAllocatedBytes = allocatedBytes;
  return buffer;
}

function countLive(size: number): void {
  liveBytes += size;
  if (liveBytes > peakLiveBytes) peakLiveBytes = liveBytes;
}

/**
 * Returns a buffer to the pool: reusable at once for GPU-written contents, for uploads once the work recorded so
 * far is submitted.
 */
export function releaseBuffer(buffer: GPUBuffer): void {
  liveBytes -= buffer.size;
  pooledBytes += buffer.size;
  let list = releasedSinceSubmit.get(buffer.size);
  if (!list) releasedSinceSubmit.set(buffer.size, list = []);
  list.push(buffer);
}

/** Bytes of GPU buffers currently held by live tensors (pool bucket sizes). For leak tests. */
export function liveGpuBytes(): number {
  return liveBytes;
}

/** Bytes held in the pool, free for reuse. */
export function pooledGpuBytes(): number {
  return pooledBytes;
}

/**
 * High-water marks since the last {@link resetPeakGpuBytes}: `live`, the most bytes held by live tensors at once
 * (pool bucket sizes, as {@link liveGpuBytes}); `allocated`, the most bytes of pool buffers the device held at once
 * (live, pooled, and released but not yet reusable), which is what runs out when a run does not fit.
 * @example
 * ```ts
 * import { initGpu, peakGpuBytes, resetPeakGpuBytes } from "./runtime.ts";
 * import { zeros } from "./tensor.ts";
 * await initGpu();
 * resetPeakGpuBytes();
 * zeros([1024]).dispose();
 * console.log(peakGpuBytes().live >= 4096);
 * ```
 */
export function peakGpuBytes(): { live: number; allocated: number } {
  return { live: peakLiveBytes, allocated: peakAllocatedBytes };
}

/** Starts new high-water marks at the current live and allocated bytes. */
export function resetPeakGpuBytes(): void {
  peakLiveBytes = liveBytes;
  peakAllocatedBytes = allocatedBytes;
}

/** Destroys every pooled buffer (frees device memory; live tensors are untouched). */
export function trimPool(): void {
  flush();
  for (const list of freeBuffers.values()) {
    for (const b of list) {
      forgetBindGroups(b);
      allocatedBytes -= b.size;
      b.destroy();
    }
  }
  freeBuffers.clear();
  pooledBytes = 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Recording and submission

const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is at most 256
const SLOTS_PER_CHUNK = 512;
/** Dispatches per submit at most (slots can repeat, so a chunk may hold more dispatches than slots). */
const DISPATCHES_PER_CHUNK = 1024;
let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let uniformArena: GPUBuffer | null = null;
const uniformCpu = new ArrayBuffer(UNIFORM_SLOT * SLOTS_PER_CHUNK);
const uniformU32 = new Uint32Array(uniformCpu);
const uniformF32 = new Float32Array(uniformCpu);
const uniformI32 = new Int32Array(uniformCpu);
/** Slots of this chunk by a hash of their words (and length), for reuse of identical uniform contents. */
const slotsByHash = new Map<number, number[]>();
/** Words written in each slot of this chunk. */
const slotWords = new Uint8Array(SLOTS_PER_CHUNK);
let slotsUsed = 0;
let chunkDispatches = 0;
let dispatchCount = 0;
let submitCount = 0;
let uniformSlotCount = 0;
/** The dynamic offset of binding 0, passed as a typed array (an array costs ~1 µs more per call in Deno). */
const dynamicOffset = new Uint32Array(1);

// Bind groups by layout and buffer identity; see the module comment.
const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 1;
const bindGroupCache = new Map<string, GPUBindGroup>();
/** Cache keys that name each buffer, for forgetting them when the buffer is destroyed. */
const keysByBuffer = new Map<number, string[]>();
/** Bound on cached bind groups (a step needs a few hundred); past it the cache starts over. */
const MAX_BIND_GROUPS = 16384;
let bindGroupsCreated = 0;

function bufferId(buffer: GPUBuffer): number {
  let id = bufferIds.get(buffer);
  if (id === undefined) bufferIds.set(buffer, id = nextBufferId++);
  return id;
}

/** Drops the cached bind groups that refer to `buffer` (called before it is destroyed). */
function forgetBindGroups(buffer: GPUBuffer): void {
  const id = bufferIds.get(buffer);
  if (id === undefined) return;
  const keys = keysByBuffer.get(id);
  if (keys) { for (const k of keys) bindGroupCache.delete(k); }
  keysByBuffer.delete(id);
  bufferIds.delete(buffer);
}

function bindGroupFor(
  entry: PipelineEntry,
  kernel: Kernel,
  arena: GPUBuffer,
  bindings: readonly Binding[],
): GPUBindGroup {
  // The key names each binding's buffer and, where it binds a range (a slice, or a buffer larger than one binding
  // whose contents fit), the range: the same buffer bound over another range is another bind group.
  const resources = bindings.map((b, i) => bindingResource(kernel, i, b));
  let key = String(entry.layoutId);
  for (const r of resources) {
    key += "," + bufferId(r.buffer);
    if (r.size !== undefined) key += `@${r.offset ?? 0}+${r.size}`;
  }
  let group = bindGroupCache.get(key);
  if (group) return group;
  if (bindGroupCache.size >= MAX_BIND_GROUPS) {
    bindGroupCache.clear();
    keysByBuffer.clear();
  }
  group = gpu().createBindGroup({
    layout: entry.layout,
    entries: [
      { binding: 0, resource: { buffer: arena, offset: 0, size: UNIFORM_SLOT } },
      ...resources.map((resource, i) => ({ binding: i + 1, resource })),
    ],
  });
  bindGroupsCreated++;
  bindGroupCache.set(key, group);
  for (const b of new Set(resources.map((r) => r.buffer))) {
    const id = bufferId(b);
    let keys = keysByBuffer.get(id);
    if (!keys) keysByBuffer.set(id, keys = []);
    keys.push(key);
  }
  return group;
}

/**
 * Writes `uniforms` into the next free slot and returns the slot to bind: an earlier slot of this chunk with the
 * same words when there is one (the free slot is then left free), else the new one.
 */
function uniformSlot(uniforms: readonly Uniform[]): number {
  const slot = slotsUsed;
  const base = (slot * UNIFORM_SLOT) / 4;
  let hash = uniforms.length;
  for (let i = 0; i < uniforms.length; i++) {
    const u = uniforms[i];
    if (typeof u === "number") uniformU32[base + i] = u;
    else if ("f32" in u) uniformF32[base + i] = u.f32;
    else uniformI32[base + i] = u.i32;
    hash = (Math.imul(hash, 0x01000193) ^ uniformU32[base + i]) | 0;
  }
  const same = slotsByHash.get(hash);
  if (same) {
    for (const s of same) {
      if (slotWords[s] !== uniforms.length) continue;
      const sBase = (s * UNIFORM_SLOT) / 4;
      let equal = true;
      for (let i = 0; i < uniforms.length && equal; i++) {
        equal = uniformU32[sBase + i] === uniformU32[base + i];
      }
      if (equal) return s;
    }
    same.push(slot);
  } else {
    slotsByHash.set(hash, [slot]);
  }
  slotWords[slot] = uniforms.length;
  slotsUsed++;
  uniformSlotCount++;
  return slot;
}

/** A uniform value: a plain number is written as u32 (must be a non-negative integer); wrap floats with `f32`. */
export type Uniform = number | { f32: number } | { i32: number };
/** Marks a uniform value as f32. */
export const f32 = (x: number): { f32: number } => ({ f32: x });
/** Marks a uniform value as i32. */
export const i32 = (x: number): { i32: number } => ({ i32: x });

function openPass(): GPUComputePassEncoder {
  if (!encoder) encoder = gpu().createCommandEncoder();
  if (!pass) pass = encoder.beginComputePass();
  return pass;
}

/** Ends the open compute pass (needed before copy commands); the encoder stays open. */
function closePass(): void {
  if (pass) {
    pass.end();
    pass = null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Storage bindings: whole buffers or byte ranges, and the binding-size limit

/**
 * A byte range of a buffer bound in its place: `offset` a multiple of the device's
 * `minStorageBufferOffsetAlignment`, `size` a multiple of 4 and at most `maxStorageBufferBindingSize`. Ops that
 * split a tensor larger than one binding may hold dispatch over such slices (lib/ops/split.ts).
 */
export interface BufferSlice {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** What a storage binding of a dispatch holds: a whole buffer, or a slice of one. */
export type Binding = GPUBuffer | BufferSlice;

/** The device's maxStorageBufferBindingSize, read once (a limits read costs ~0.2 µs, a dispatch ~11). */
let maxBindingBytes = 0;

/** What each pool buffer holds now (set by the tensor that owns it), for error messages. */
const bufferLabels = new WeakMap<GPUBuffer, { label: string; bytes: number }>();

/** Names the contents of a buffer (e.g. `f32[6, 64, 102, 1024]`) and their bytes, for binding-limit errors. */
export function labelBuffer(buffer: GPUBuffer, label: string, bytes: number): void {
  bufferLabels.set(buffer, { label, bytes });
}

/** Formats a byte count in binary units: `160.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * The resource of one storage binding. A whole buffer larger than the binding limit but holding fewer bytes (pool
 * buckets round up) is bound by its contents' size; one whose contents exceed the limit is refused with a
 * RangeError naming the kernel, the tensor and the limit, before WebGPU would reject the bind group.
 */
function bindingResource(kernel: Kernel, index: number, b: Binding): GPUBufferBinding {
  const max = maxBindingBytes || (maxBindingBytes = gpu().limits.maxStorageBufferBindingSize);
  if (!(b instanceof GPUBuffer)) {
    if (b.size > max) throw bindingError(kernel, index, b.buffer, b.size, max);
    return b;
  }
  if (b.size <= max) return { buffer: b };
  const info = bufferLabels.get(b);
  const bytes = Math.ceil((info?.bytes ?? b.size) / 4) * 4;
  if (bytes > max) throw bindingError(kernel, index, b, bytes, max);
  return { buffer: b, offset: 0, size: bytes };
}

function bindingError(
  kernel: Kernel,
  index: number,
  buffer: GPUBuffer,
  bytes: number,
  max: number,
): RangeError {
  const label = bufferLabels.get(buffer)?.label ?? "a buffer";
  return new RangeError(
    `${kernel.name}: binding ${index + 1} holds ${label} (${formatBytes(bytes)}), more than this adapter's ` +
      `maxStorageBufferBindingSize of ${formatBytes(max)}, and this op does not split it: lower the batch, ` +
      `the length or the runs per group`,
  );
}

/**
 * Records one dispatch of `kernel` over `workgroups`, binding `uniforms` at binding 0 and `buffers` at 1...
 * Nothing runs until `flush()` (called automatically every few hundred dispatches and before any readback).
 * @throws {RangeError} when a binding holds more than the device's `maxStorageBufferBindingSize`.
 */
export function dispatch(
  kernel: Kernel,
  buffers: readonly Binding[],
  uniforms: readonly Uniform[],
  workgroups: readonly [number, number?, number?],
): void {
  if (buffers.length !== kernel.bindings.length) {
    throw new Error(
      `kernel ${kernel.name}: expected ${kernel.bindings.length} buffers, got ${buffers.length}`,
    );
  }
  if (uniforms.length > UNIFORM_SLOT / 4) throw new Error(`kernel ${kernel.name}: too many uniforms`);
  const [x, y = 1, z = 1] = workgroups;
  if (x === 0 || y === 0 || z === 0) return;
  const maxGroups = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (x > maxGroups || y > maxGroups || z > maxGroups) {
    throw new RangeError(
      `kernel ${kernel.name}: workgroup grid ${x}×${y}×${z} exceeds ${maxGroups} per dimension`,
    );
  }
  // (profiled chunks are bounded by the query set: two timestamps a dispatch)
  if (
    slotsUsed === SLOTS_PER_CHUNK || chunkDispatches === (profiler ? SLOTS_PER_CHUNK : DISPATCHES_PER_CHUNK)
  ) {
    flush();
  }
  const entry = pipelineFor(kernel);
  if (!uniformArena) {
    uniformArena = gpu().createBuffer({
      size: UNIFORM_SLOT * SLOTS_PER_CHUNK,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }
  const slot = uniformSlot(uniforms);
  const bindGroup = bindGroupFor(entry, kernel, uniformArena, buffers);
  chunkDispatches++;
  if (profiler) {
    // Profiling: each dispatch in its own pass, timestamped at its start and end.
    closePass();
    if (!encoder) encoder = gpu().createCommandEncoder();
    const q = profiler.names.length;
    profiler.names.push(kernel.name);
    pass = encoder.beginComputePass({
      timestampWrites: {
        querySet: profiler.querySet,
        beginningOfPassWriteIndex: 2 * q,
        endOfPassWriteIndex: 2 * q + 1,
      },
    });
  }
  const p = openPass();
  p.setPipeline(entry.pipeline);
  dynamicOffset[0] = slot * UNIFORM_SLOT;
  p.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
  p.dispatchWorkgroups(x, y, z);
  if (profiler) closePass();
  dispatchCount++;
}

/** Records a buffer-to-buffer copy (ends the current compute pass). */
export function copyBuffer(
  src: GPUBuffer,
  dst: GPUBuffer,
  bytes: number,
  srcOffset = 0,
  dstOffset = 0,
): void {
  closePass();
  if (!encoder) encoder = gpu().createCommandEncoder();
  encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
}

/** Uploads data into a buffer; ordered before everything recorded but not yet submitted. */
export function writeBuffer(dst: GPUBuffer, data: ArrayBufferView, dstOffset = 0): void {
  gpu().queue.writeBuffer(dst, dstOffset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}

/** Submits everything recorded so far. Cheap when nothing is pending. */
export function flush(): void {
  if (encoder) {
    closePass();
    if (profiler && profiler.names.length > 0) resolveProfile(encoder, profiler);
    if (slotsUsed > 0) gpu().queue.writeBuffer(uniformArena!, 0, uniformCpu, 0, slotsUsed * UNIFORM_SLOT);
    gpu().queue.submit([encoder.finish()]);
    submitCount++;
    if (profiler) {
      for (const read of profiler.afterSubmit.splice(0)) {
        const previous = profiler.reads.at(-1) ?? Promise.resolve();
        profiler.reads.push(previous.then(read));
      }
    }
    encoder = null;
    slotsUsed = 0;
    chunkDispatches = 0;
    slotsByHash.clear();
  }
  // Each free list is kept sorted with the oldest buffer (lowest id) last, where `acquireBuffer` pops: whichever
  // order a step frees its tensors in, the next identical step then gets the same buffers in the same order, and
  // its bind groups come from the cache.
  for (const [size, released] of releasedSinceSubmit) {
    let list = freeBuffers.get(size);
    if (!list) freeBuffers.set(size, list = []);
    list.push(...released);
    list.sort((x, y) => bufferId(y) - bufferId(x));
  }
  releasedSinceSubmit = new Map();
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel profiles (timestamp queries)

interface Profiler {
  querySet: GPUQuerySet;
  names: string[]; // kernel name of each timestamped dispatch of the current chunk
  totals: Map<string, { count: number; seconds: number }>;
  afterSubmit: (() => Promise<void>)[];
  reads: Promise<void>[];
  lastEnd: bigint; // the latest end timestamp seen (chunks are read in submission order)
}
let profiler: Profiler | null = null;

/** Copies the chunk's timestamps out (recorded on `enc`, before its submit) and sums them by kernel later. */
function resolveProfile(enc: GPUCommandEncoder, prof: Profiler): void {
  const names = prof.names;
  prof.names = [];
  const bytes = names.length * 16;
  const resolved = gpu().createBuffer({
    size: bytes,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const staging = gpu().createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  enc.resolveQuerySet(prof.querySet, 0, 2 * names.length, resolved, 0);
  enc.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
  // mapped only after the submit (a buffer with a pending map cannot be used by a submit)
  prof.afterSubmit.push(async () => {
    await staging.mapAsync(GPUMapMode.READ);
    const ns = new BigUint64Array(staging.getMappedRange());
    // A pass's start timestamp can be taken while earlier work still runs, so intervals may overlap: each
    // dispatch is charged from its start or the previous dispatch's end, whichever is later (the sum is then
    // the GPU's busy time, and back-to-back dispatches are not counted twice).
    names.forEach((name, i) => {
      const begin = ns[2 * i], end = ns[2 * i + 1];
      const from = begin > prof.lastEnd ? begin : prof.lastEnd;
      const seconds = end > from ? Number(end - from) * 1e-9 : 0;
      if (end > prof.lastEnd) prof.lastEnd = end;
      const t = prof.totals.get(name) ?? { count: 0, seconds: 0 };
      t.count++;
      t.seconds += seconds;
      prof.totals.set(name, t);
    });
    staging.unmap();
    staging.destroy();
    resolved.destroy();
  });
}

/** GPU time of one kernel over a profiled piece of work. */
export interface KernelTime {
  /** `Kernel.name` */
  name: string;
  /** Dispatches of it. */
  count: number;
  /** Total GPU seconds of its dispatches, each from its start (or the previous dispatch's end, if later) to its end. */
  seconds: number;
}

/**
 * Runs `record` (which records GPU work) with every dispatch timestamped in its own compute pass, waits for the
 * GPU, and returns the GPU time per kernel name, longest first. Each dispatch gets its own pass, so kernels do
 * not overlap while profiled: the sum can exceed the unprofiled time of the same work by a few µs a dispatch.
 * @throws {GpuUnavailableError} when the device lacks the `timestamp-query` feature.
 * @example
 * ```ts
 * import { initGpu, profileKernels } from "./runtime.ts";
 * import { tensor } from "./tensor.ts";
 * import { add } from "../ops/elementwise.ts";
 * await initGpu();
 * const a = tensor([1, 2, 3], [3]);
 * const times = await profileKernels(() => void add(a, a));
 * console.log(times[0].name, times[0].count);
 * ```
 */
export async function profileKernels(record: () => void | Promise<void>): Promise<KernelTime[]> {
  const dev = gpu();
  if (!dev.features.has("timestamp-query")) {
    throw new GpuUnavailableError(
      "profileKernels needs the timestamp-query feature, which this device lacks",
    );
  }
  if (profiler) throw new Error("profileKernels: already profiling");
  await sync(); // earlier work must not run into the first profiled dispatch's interval
  const prof: Profiler = {
    querySet: dev.createQuerySet({ type: "timestamp", count: 2 * SLOTS_PER_CHUNK }),
    names: [],
    totals: new Map(),
    afterSubmit: [],
    reads: [],
    lastEnd: 0n,
  };
  profiler = prof;
  let failure: { error: unknown } | null = null;
  try {
    await record();
  } catch (error) {
    failure = { error };
  }
  // Whether or not `record` threw: submit what it recorded (with its timestamps), wait for every read, and only
  // then destroy the query set, so nothing the GPU may still use is freed under it.
  try {
    flush();
  } finally {
    profiler = null;
  }
  await Promise.all(prof.reads);
  prof.querySet.destroy();
  if (failure) throw failure.error;
  return [...prof.totals].map(([name, t]) => ({ name, ...t })).sort((a, b) => b.seconds - a.seconds);
}

/** Counters for tests and profiles. */
export interface RuntimeStats {
  /** Dispatches recorded. */
  dispatches: number;
  /** Queue submits. */
  submits: number;
  /** Distinct pipelines compiled. */
  pipelines: number;
  /** Seconds of wall time spent creating them (shader module and pipeline, where the driver compiles). */
  pipelineSeconds: number;
  /** Bind groups created (cache misses). */
  bindGroupsCreated: number;
  /** Bind groups in the cache now. */
  bindGroupsCached: number;
  /** Uniform slots written (dispatches whose uniforms repeated an earlier slot of their chunk take none). */
  uniformSlots: number;
}

/** Counters for tests and profiles (cumulative since the process started, except `bindGroupsCached`). */
export function runtimeStats(): RuntimeStats {
  return {
    dispatches: dispatchCount,
    submits: submitCount,
    pipelines: pipelineTotal,
    pipelineSeconds: pipelineMs / 1000,
    bindGroupsCreated,
    bindGroupsCached: bindGroupCache.size,
    uniformSlots: uniformSlotCount,
  };
}

let syncSource: GPUBuffer | null = null;

/**
 * Waits until the GPU has finished all submitted work. It maps a 4-byte copy made after that work, rather than
 * trusting `onSubmittedWorkDone`, whose promise was seen to resolve before the work ended (timings of 4096³
 * matmuls above the H100's peak); a mapped copy cannot be ready before the work queued ahead of it.
 */
export async function sync(): Promise<void> {
  if (!syncSource) syncSource = gpu().createBuffer({ size: 16, usage: BUFFER_USAGE });
  await readBuffer(syncSource, 4);
}

/** Reads `bytes` bytes of a buffer back to the CPU: flushes, copies to a staging buffer, maps. ~12 ms round trip. */
export async function readBuffer(src: GPUBuffer, bytes: number, srcOffset = 0): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = gpu().createBuffer({
    size: Math.max(size, 4),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  if (size > 0) copyBuffer(src, staging, size, srcOffset, 0);
  flush();
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}
