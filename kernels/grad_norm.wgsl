// Global gradient norm of each run, without float atomics and in a fixed order (bit-identical run to run), in two
// stages (lib/train/optim.ts):
// sumsq:  one workgroup per (run k, chunk c) of one gradient tensor (K, n): the sum of squares of run k's elements
//         [c·chunk, (c+1)·chunk) → PART[k·stride + offset + c]. Each tensor owns the columns [offset, offset+chunks)
//         of PART (K, stride), so run k's partials over all tensors form one contiguous row.
// finish: one workgroup per run: NORM[k] = sqrt(Σ_j PART[k·stride + j]), j in a fixed order.
// Both entries share one binding layout: X (read) and Y (read_write) mean (G, PART) for sumsq, (PART, NORM) for
// finish. Loads are scalar (coalesced 4 B per thread): this pass reads each gradient once, 1/8 of the optimiser's
// traffic, so a vec4 variant is not worth a second layout.

struct Params {
  n: u32,       // sumsq: elements per run
  chunks: u32,  // sumsq: chunks per run of this tensor
  runs: u32,    // K
  stride: u32,  // partials per run over all tensors
  offset: u32,  // sumsq: this tensor's first column of PART
  chunk: u32,   // sumsq: elements per chunk
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn tree_sum(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

// Workgroups are laid out (x, y) with w = x + y·nx; w → (run, chunk).
@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= u.runs * u.chunks) { return; }  // uniform per workgroup
  let k = w / u.chunks;
  let c = w % u.chunks;
  let start = c * u.chunk;
  let end = min(start + u.chunk, u.n);
  let base = k * u.n;
  var acc = 0.0;
  for (var j = start + lid; j < end; j += 256u) { let x = X[base + j]; acc += x * x; }
  partial[lid] = acc;
  let total = tree_sum(lid);
  if (lid == 0u) { Y[k * u.stride + u.offset + c] = total; }
}

@compute @workgroup_size(256)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = wid.x;
  var acc = 0.0;
  for (var j = lid; j < u.stride; j += 256u) { acc += X[k * u.stride + j]; }
  partial[lid] = acc;
  let total = tree_sum(lid);
  if (lid == 0u) { Y[k] = sqrt(total); }
}
