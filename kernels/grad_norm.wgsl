// Global gradient norm of each run, without float atomics and in a fixed order (bit-identical run to run), in two
// stages (lib/train/optim.ts):
// sumsq:  one workgroup per (tensor j, run k, chunk c) of up to TENSORS gradient tensors (K, n_j), each bound as
//         its own G_j: the sum of squares of run k's elements [c·chunk, (c+1)·chunk) of G_j →
//         PART[k·stride + off_j + c]. Each tensor owns the columns [off_j, off_j + chunks_j) of PART (K, stride),
//         so run k's partials over all tensors form one contiguous row. Tensor j's workgroups are the range
//         [wbeg_j, wbeg_j + K·chunks_j) of the dispatch. (Several tensors per dispatch: a model has dozens of small
//         ones, and a dispatch each cost more than their reads; every partial is the same sum as with one tensor
//         per dispatch, so the bits are too.)
// finish: one workgroup per run: NORM[k] = sqrt(Σ_j PART[k·stride + j]), j in a fixed order.
// Loads are scalar (coalesced 4 B per thread): this pass reads each gradient once, 1/8 of the optimiser's
// traffic, so a vec4 variant is not worth a second layout.
// Placeholders (lib/train/optim.ts): TENSORS, the tensors of one sumsq dispatch (1 for finish); GRADS, their
// bindings G_j (3 + j); LOAD_CASES, one `case` per tensor reading its element.

struct Tensor {
  n: u32, // elements per run
  chunks: u32, // chunks per run
  off: u32, // first column of PART
  wbeg: u32, // first workgroup of the dispatch
}

struct Params {
  runs: u32, // K
  stride: u32, // partials per run over all tensors
  chunk: u32, // elements per chunk
  count: u32, // tensors in this dispatch
  t: array<Tensor, {{TENSORS}}>,
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> PART: array<f32>; // sumsq: written; finish: read
@group(0) @binding(2) var<storage, read_write> NORM: array<f32>; // finish only (sumsq binds it unused)
{{GRADS}}

var<workgroup> partial: array<f32, 256>;

fn tree_sum(lid: u32) -> f32 {
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

fn load(j: u32, i: u32) -> f32 {
  switch j {
    {{LOAD_CASES}}
    default: { return 0.0; }
  }
}

@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  var j = 0u; // this workgroup's tensor: the last whose range starts at or before w
  for (var q = 1u; q < u.count; q++) { if (w >= u.t[q].wbeg) { j = q; } }
  let t = u.t[j];
  let local = w - t.wbeg;
  if (local >= u.runs * t.chunks) { return; } // uniform per workgroup
  let k = local / t.chunks;
  let c = local % t.chunks;
  let start = c * u.chunk;
  let end = min(start + u.chunk, t.n);
  let base = k * t.n;
  var acc = 0.0;
  for (var i = start + lid; i < end; i += 256u) { let x = load(j, base + i); acc += x * x; }
  partial[lid] = acc;
  let total = tree_sum(lid);
  if (lid == 0u) { PART[k * u.stride + t.off + c] = total; }
}

@compute @workgroup_size(256)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = wid.x;
  var acc = 0.0;
  for (var j = lid; j < u.stride; j += 256u) { acc += PART[k * u.stride + j]; }
  partial[lid] = acc;
  let total = tree_sum(lid);
  if (lid == 0u) { NORM[k] = sqrt(total); }
}
