// Softmax over the last axis of a tensor viewed as (R, V) rows, and its backward.
// One workgroup of 256 per row (row = wid.x + wid.y·nwg.x); each thread reduces a strided slice, then a tree in
// shared memory combines the 256 partials in a fixed order (deterministic).

struct Params { R: u32, V: u32 }

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

// Tree reduction of partial[]; every thread gets the result. op 0 = sum, 1 = max.
fn reduce_(lid: u32, x: f32, op: u32) -> f32 {
  partial[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let a = partial[lid];
      let b = partial[lid + s];
      partial[lid] = select(a + b, max(a, b), op == 1u);
    }
    workgroupBarrier();
  }
  let r = partial[0];
  workgroupBarrier();  // partial[] is reused by the next reduction
  return r;
}

// ---- forward: y = exp(x - max x) / Σ exp(x - max x) ----
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }  // uniform per workgroup
  let base = row * p.V;
  var m = -3.4028235e38;
  for (var v = lid; v < p.V; v += 256u) { m = max(m, X[base + v]); }
  m = reduce_(lid, m, 1u);
  var s = 0.0;
  for (var v = lid; v < p.V; v += 256u) { s += exp(X[base + v] - m); }
  let inv = 1.0 / reduce_(lid, s, 0u);
  for (var v = lid; v < p.V; v += 256u) { Y[base + v] = exp(X[base + v] - m) * inv; }
}

// ---- backward: dx = y ⊙ (g - Σ_v g_v y_v) ----
@group(0) @binding(1) var<storage, read> BY: array<f32>;
@group(0) @binding(2) var<storage, read> BG: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let base = row * p.V;
  var s = 0.0;
  for (var v = lid; v < p.V; v += 256u) { s += BG[base + v] * BY[base + v]; }
  let gy = reduce_(lid, s, 0u);
  for (var v = lid; v < p.V; v += 256u) { DX[base + v] = BY[base + v] * (BG[base + v] - gy); }
}
