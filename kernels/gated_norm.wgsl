// Gated RMSNorm (mamba_ssm's RMSNormGated with norm_before_gate = False), fused: one pass instead of a SiLU, a
// product and a norm, and neither silu(z) nor y ⊙ silu(z) is ever stored.
//   v = y ⊙ silu(z),   out = v · rstd · w,   rstd = 1 / sqrt(mean(v²) + eps)
// over each group of DG = E / G consecutive channels of a row (group row gr = row·G + group, at gr·DG).
// {{WG}} threads of the row kernels, a power of two in [32, 256] (the host picks it from DG).
//
// Layout (one table for every entry point):
//   Y     (rows, E)   y                       Z     (rows, E)   z (the gate, before SiLU)
//   Wt    (K, E)      weight                  G     (rows, E)   cotangent of out (the forward binds Y here)
//   Stats (rows·G)    rstd per group row, written by the forward and read by the backward
//   Out   forward: out (rows, E); backward_dx: dy (rows, E); backward_dw: partial dw (K, S, E)
//   Out2  backward_dx only: dz (rows, E)

struct Params { grows: u32, GR: u32, G: u32, DG: u32, eps: f32, chunk: u32, S: u32, R: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
@group(0) @binding(2) var<storage, read> Z: array<f32>;
@group(0) @binding(3) var<storage, read> Wt: array<f32>;
@group(0) @binding(4) var<storage, read> G: array<f32>;
@group(0) @binding(5) var<storage, read_write> Stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> Out: array<f32>;
@group(0) @binding(7) var<storage, read_write> Out2: array<f32>;

const WG: u32 = {{WG}}u;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

// Sums a and b over the workgroup (a fixed tree: the same result every run). Every thread gets the totals.
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
  workgroupBarrier();
  return total;
}

fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// The weight offset of group row gr: run k = gr / GR (GR = R·G group rows per run), channel (gr % G)·DG.
fn wbase(gr: u32) -> u32 { return (gr / p.GR) * p.G * p.DG + (gr % p.G) * p.DG; }

// One workgroup per group row.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let gr = wid.x + wid.y * nwg.x;
  if (gr >= p.grows) { return; } // uniform per workgroup
  let base = gr * p.DG;
  var q = 0.0;
  for (var d = lid; d < p.DG; d += WG) {
    let z = Z[base + d];
    let v = Y[base + d] * z * sigmoid_(z);
    q += v * v;
  }
  let rstd = inverseSqrt(reduce2(lid, q, 0.0).x / f32(p.DG) + p.eps);
  let wb = wbase(gr);
  for (var d = lid; d < p.DG; d += WG) {
    let z = Z[base + d];
    Out[base + d] = Y[base + d] * z * sigmoid_(z) * rstd * Wt[wb + d];
  }
  if (lid == 0u) { Stats[gr] = rstd; }
}

// dy and dz, one workgroup per group row. With ĝ = g·w and v̂ = v·rstd:
//   dv = rstd · (ĝ − v̂ · mean(ĝ · v̂)),   dy = dv · silu(z),   dz = dv · y · silu'(z),
//   silu'(z) = σ(z) · (1 + z · (1 − σ(z))).
@compute @workgroup_size(WG)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let gr = wid.x + wid.y * nwg.x;
  if (gr >= p.grows) { return; }
  let base = gr * p.DG;
  let wb = wbase(gr);
  let rstd = Stats[gr];
  var sgv = 0.0;
  for (var d = lid; d < p.DG; d += WG) {
    let z = Z[base + d];
    let gh = G[base + d] * Wt[wb + d];
    sgv += gh * Y[base + d] * z * sigmoid_(z) * rstd;
  }
  let mgv = reduce2(lid, sgv, 0.0).x / f32(p.DG);
  for (var d = lid; d < p.DG; d += WG) {
    let z = Z[base + d];
    let y = Y[base + d];
    let sg = sigmoid_(z);
    let vh = y * z * sg * rstd;
    let dv = rstd * (G[base + d] * Wt[wb + d] - vh * mgv);
    Out[base + d] = dv * z * sg;
    Out2[base + d] = dv * y * sg * (1.0 + z * (1.0 - sg));
  }
}

// Stage 1 of dw = Σ_rows g·v̂ per run, without atomics: thread (k, s, c) sums rows [s·chunk, min((s+1)·chunk, R))
// of run k in order into the partials (K, S, E); the host sums the S partials of each (k, c) in order.
@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let E = p.G * p.DG;
  let K = p.grows / p.GR;
  if (idx >= K * p.S * E) { return; }
  let c = idx % E;
  let ks = idx / E;
  let s = ks % p.S;
  let k = ks / p.S;
  let r0 = s * p.chunk;
  let r1 = min(r0 + p.chunk, p.R);
  var dw = 0.0;
  for (var r = r0; r < r1; r++) {
    let row = k * p.R + r;
    let o = row * E + c;
    let z = Z[o];
    dw += G[o] * Y[o] * z * sigmoid_(z) * Stats[row * p.G + c / p.DG];
  }
  Out[idx] = dw;
}
