// RMSNorm and LayerNorm over the last axis D of `rows` rows; K runs of R rows each (row = k·R + r), so the weight
// and bias row of a data row is k = row / R.
//   RMSNorm:   y = x̂ · w,      x̂ = x · rstd,        rstd = 1 / sqrt(mean(x²) + eps)
//   LayerNorm: y = x̂ · w + b,  x̂ = (x − μ) · rstd,  rstd = 1 / sqrt(mean((x − μ)²) + eps)
// Placeholders: {{CENTER}} true for LayerNorm (subtract μ, add b), false for RMSNorm (μ is 0);
// {{WG}} threads of the row kernels, a power of two in [32, 256] (the host picks it from D).
//
// Layout (one table for every entry point; an entry leaves the bindings it does not read unused):
//   X     (rows, D)  input x
//   Wt    (K, D)     weight
//   Bs    (K, D)     bias (RMSNorm binds the weight here; never read)
//   G     (rows, D)  cotangent of y (the forward binds x here; never read)
//   Stats (rows, 2)  per row [μ, rstd], written by the forward and read by the backward (μ = 0 for RMSNorm)
//   Out   forward: y (rows, D); backward_dx: dx (rows, D); backward_dw*: partial dw (K, S, D)
//   Out2  backward_dwdb only: partial db (K, S, D)

// A dispatch may cover a chunk of the rows (tensors larger than one binding): X, G, Stats and the row outputs are
// bound from row `row0` (the row kernels then see `rows` rows from there, and index the weight by the global
// row); the dw stage writes partials [first, last) of its (K, S, D) output.

struct Params { rows: u32, R: u32, D: u32, eps: f32, chunk: u32, S: u32, row0: u32, first: u32, last: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> Bs: array<f32>;
@group(0) @binding(4) var<storage, read> G: array<f32>;
@group(0) @binding(5) var<storage, read_write> Stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> Out: array<f32>;
@group(0) @binding(7) var<storage, read_write> Out2: array<f32>;

const CENTER: bool = {{CENTER}};
const WG: u32 = {{WG}}u;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

// Sums a and b over the workgroup (a fixed tree, so the result is the same every run). Call from uniform control
// flow; every thread gets the totals.
fn reduce2(lid: u32, a: f32, b: f32) -> vec2<f32> {
  red_a[lid] = a;
  red_b[lid] = b;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      red_a[lid] += red_a[lid + s];
      red_b[lid] += red_b[lid + s];
    }
    workgroupBarrier();
  }
  let total = vec2<f32>(red_a[0], red_b[0]);
  workgroupBarrier(); // the arrays may be reused right after
  return total;
}

// One workgroup per row. μ first, then the variance about μ (two passes over the row: the one-pass
// E[x²] − E[x]² cancels catastrophically in f32 when |μ| ≫ σ). Saves [μ, rstd] for the backward.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; } // uniform per workgroup
  let base = row * p.D;
  let wbase = ((row + p.row0) / p.R) * p.D;
  let n = f32(p.D);
  var mu = 0.0;
  if (CENTER) {
    var s = 0.0;
    for (var d = lid; d < p.D; d += WG) { s += X[base + d]; }
    mu = reduce2(lid, s, 0.0).x / n;
  }
  var q = 0.0;
  for (var d = lid; d < p.D; d += WG) {
    let v = X[base + d] - mu;
    q += v * v;
  }
  let rstd = inverseSqrt(reduce2(lid, q, 0.0).x / n + p.eps);
  for (var d = lid; d < p.D; d += WG) {
    var y = (X[base + d] - mu) * rstd * Wt[wbase + d];
    if (CENTER) { y += Bs[wbase + d]; }
    Out[base + d] = y;
  }
  if (lid == 0u) {
    Stats[2u * row] = mu;
    Stats[2u * row + 1u] = rstd;
  }
}

// dx, one workgroup per row. With ĝ = g·w:
//   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))   (LayerNorm)
//   dx = rstd · (ĝ − x̂ · mean(ĝ · x̂))             (RMSNorm)
// x̂ is recomputed from x and the saved [μ, rstd] (cheaper than storing it).
@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; } // uniform per workgroup
  let base = row * p.D;
  let wbase = ((row + p.row0) / p.R) * p.D;
  let n = f32(p.D);
  let mu = Stats[2u * row];
  let rstd = Stats[2u * row + 1u];
  var sg = 0.0;
  var sgx = 0.0;
  for (var d = lid; d < p.D; d += WG) {
    let gh = G[base + d] * Wt[wbase + d];
    sg += gh;
    sgx += gh * (X[base + d] - mu) * rstd;
  }
  let sums = reduce2(lid, sg, sgx);
  var mg = 0.0;
  if (CENTER) { mg = sums.x / n; }
  let mgx = sums.y / n;
  for (var d = lid; d < p.D; d += WG) {
    let gh = G[base + d] * Wt[wbase + d];
    let xh = (X[base + d] - mu) * rstd;
    Out[base + d] = rstd * (gh - mg - xh * mgx);
  }
}

// Stage 1 of dw = Σ_rows g·x̂ and db = Σ_rows g per run, without atomics: thread (k, s, d) sums rows
// [s·chunk, min((s+1)·chunk, R)) of run k in order into the partials (K, S, D); the host then sums the S
// partials of each (k, d) in order (reduce.wgsl `cols`). Threads adjacent in d read adjacent addresses.
fn partials(idx: u32) -> vec2<f32> {
  let d = idx % p.D;
  let ks = idx / p.D;
  let s = ks % p.S;
  let k = ks / p.S;
  let r0 = s * p.chunk;
  let r1 = min(r0 + p.chunk, p.R);
  var dw = 0.0;
  var db = 0.0;
  for (var r = r0; r < r1; r++) {
    let row = k * p.R + r - p.row0;
    let g = G[row * p.D + d];
    dw += g * (X[row * p.D + d] - Stats[2u * row]) * Stats[2u * row + 1u];
    db += g;
  }
  return vec2<f32>(dw, db);
}

@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = p.first + gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.last) { return; }
  Out[idx] = partials(idx).x;
}

@compute @workgroup_size(256)
fn backward_dwdb(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = p.first + gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.last) { return; }
  let v = partials(idx);
  Out[idx] = v.x;
  Out2[idx] = v.y;
}
