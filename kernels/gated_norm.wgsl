// Gated RMSNorm (mamba_ssm's RMSNormGated with norm_before_gate = False), fused: one pass instead of a SiLU, a
// product and a norm, and neither silu(z) nor y ⊙ silu(z) is ever stored.
//   v = y ⊙ silu(z),   out = v · rstd · w,   rstd = 1 / sqrt(mean(v²) + eps)
// over each group of DG = E / G consecutive channels of a row (group row gr = row·G + group, at gr·DG).
//
// The row kernels (forward, backward_dx) treat group rows as norm.wgsl treats rows: elements of type T (vec4<f32>
// when DG % 4 == 0, else f32), DV of them a group row; TPR threads a group row and RPW = 256 / TPR group rows a
// workgroup; lane l holds elements l + j·TPR (j < NV) in registers, or walks chunks of TPR·NV elements when
// FITS is false; one barrier per row sum, added in the fixed order of `rowTotal`.
// Placeholders (lib/ops/gated_norm.ts, norm.ts `rowKernelCode`): T, HSUM, DG, DV, TPR, NV, FITS, AHEAD.
//
// Layout (one table for every entry point):
//   Y     (rows, E)   y                       Z     (rows, E)   z (the gate, before SiLU)
//   Wt    (K, E)      weight                  G     (rows, E)   cotangent of out (the forward binds Y here)
//   Stats (rows·G)    rstd per group row, written by the forward and read by the backward
//   Out   forward: out (rows, E); backward_dx: dy (rows, E); backward_dw: partial dw (K, S, E)
//   Out2  backward_dx only: dz (rows, E)

struct Params { grows: u32, GR: u32, G: u32, eps: f32, chunk: u32, S: u32, R: u32 }

alias T = {{T}};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> Y: array<T>;
@group(0) @binding(2) var<storage, read> Z: array<T>;
@group(0) @binding(3) var<storage, read> Wt: array<T>;
@group(0) @binding(4) var<storage, read> G: array<T>;
@group(0) @binding(5) var<storage, read_write> Stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> Out: array<T>;
@group(0) @binding(7) var<storage, read_write> Out2: array<T>;

const DG: u32 = {{DG}}u; // floats per group row
const DV: u32 = {{DV}}u; // elements T per group row
const TPR: u32 = {{TPR}}u;
const NV: u32 = {{NV}}u;
const FITS: bool = {{FITS}};
const RPW: u32 = 256u / TPR;
const CH: u32 = TPR * NV;
const AHEAD: u32 = {{AHEAD}}u;

var<workgroup> red: array<f32, 256>;

fn hsum(v: T) -> f32 { {{HSUM}} }

//@use norm_parts.wgsl row_total

// The sum of a over the lanes of the thread's group row (one barrier; once per dispatch; uniform control flow).
fn rowSum(lid: u32, a: f32) -> f32 {
  if (TPR == 1u) { return a; }
  red[lid] = a;
  workgroupBarrier();
  return rowTotal(lid - lid % TPR);
}

fn sigmoid_(x: T) -> T { return 1.0 / (1.0 + exp(-x)); }

// The weight offset (in elements T) of group row gr: run k = gr / GR (GR = R·G group rows per run), group gr % G.
fn wrow(gr: u32) -> u32 { return ((gr / p.GR) * p.G + gr % p.G) * DV; }

//@use norm_parts.wgsl in_row

//@use norm_parts.wgsl load FN=loadY BUF=Y

//@use norm_parts.wgsl load FN=loadZ BUF=Z

//@use norm_parts.wgsl load FN=loadW BUF=Wt

//@use norm_parts.wgsl load_gw

// v = y ⊙ silu(z) of the thread's elements of chunk c.
fn loadV(at: u32, lane: u32, c: u32, live: bool) -> array<T, NV> {
  let y = loadY(at, lane, c, live);
  let z = loadZ(at, lane, c, live);
  var v: array<T, NV>;
  //@repeat NV
  v[$i] = y[$i] * z[$i] * sigmoid_(z[$i]);
  //@end
  return v;
}

// RPW group rows a workgroup; v in registers between the sum of squares and the output.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % TPR;
  let gr = (wid.x + wid.y * nwg.x) * RPW + lid / TPR;
  let live = gr < p.grows; // dead rows of the last workgroup still reach the barrier
  let at = gr * DV + lane;
  let wat = wrow(gr) + lane;
  var vs: array<T, NV>;
  var ws: array<T, NV>; // loaded with y and z, so that the output waits on no load
  if (FITS) {
    vs = loadV(at, lane, 0u, live);
    ws = loadW(wat, lane, 0u, live);
  }
  var q = T(0.0);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) { vs = loadV(at, lane, c, live); }
    //@repeat NV
    q += vs[$i] * vs[$i];
    //@end
  }
  let rstd = inverseSqrt(rowSum(lid, hsum(q)) / f32(DG) + p.eps);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      vs = loadV(at, lane, c, live);
      ws = loadW(wat, lane, c, live);
    }
    //@repeat NV
    if (live && inRow(lane, c, $iu)) { Out[at + c + $iu * TPR] = vs[$i] * rstd * ws[$i]; }
    //@end
  }
  if (live && lane == 0u) { Stats[gr] = rstd; }
}

// dy and dz, RPW group rows a workgroup (y, z and ĝ in registers). With ĝ = g·w and v̂ = v·rstd:
//   dv = rstd · (ĝ − v̂ · mean(ĝ · v̂)),   dy = dv · silu(z),   dz = dv · y · silu'(z),
//   silu'(z) = σ(z) · (1 + z · (1 − σ(z))).
@compute @workgroup_size(256)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % TPR;
  let gr = (wid.x + wid.y * nwg.x) * RPW + lid / TPR;
  let live = gr < p.grows;
  let at = gr * DV + lane;
  let wat = wrow(gr) + lane;
  var rstd = 0.0;
  if (live) { rstd = Stats[gr]; }
  var ys: array<T, NV>;
  var zs: array<T, NV>;
  var gs: array<T, NV>;
  if (FITS) {
    ys = loadY(at, lane, 0u, live);
    zs = loadZ(at, lane, 0u, live);
    gs = loadGW(at, wat, lane, 0u, live);
  }
  var sgv = T(0.0);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      ys = loadY(at, lane, c, live);
      zs = loadZ(at, lane, c, live);
      gs = loadGW(at, wat, lane, c, live);
    }
    //@repeat NV
    sgv += gs[$i] * ys[$i] * zs[$i] * sigmoid_(zs[$i]) * rstd;
    //@end
  }
  let mgv = rowSum(lid, hsum(sgv)) / f32(DG);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      ys = loadY(at, lane, c, live);
      zs = loadZ(at, lane, c, live);
      gs = loadGW(at, wat, lane, c, live);
    }
    //@repeat NV
    if (live && inRow(lane, c, $iu)) {
      let z = zs[$i];
      let y = ys[$i];
      let sg = sigmoid_(z);
      let vh = y * z * sg * rstd;
      let dv = rstd * (gs[$i] - vh * mgv);
      Out[at + c + $iu * TPR] = dv * z * sg;
      Out2[at + c + $iu * TPR] = dv * y * sg * (1.0 + z * (1.0 - sg));
    }
    //@end
  }
}

// Stage 1 of dw = Σ_rows g·v̂ per run, without atomics: thread (k, s, e) (e an element T of the row's E channels)
// sums rows [s·chunk, min((s+1)·chunk, R)) of run k in order into the partials (K, S, E); the host sums the S
// partials of each (k, c) in order. The loads of AHEAD rows are issued before their adds, which still run in row
// order (as norm.wgsl's `partials`).
@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let EV = p.G * DV; // elements T per row
  let K = p.grows / p.GR;
  if (idx >= K * p.S * EV) { return; }
  let e = idx % EV;
  let ks = idx / EV;
  let s = ks % p.S;
  let k = ks / p.S;
  let r0 = s * p.chunk;
  let r1 = min(r0 + p.chunk, p.R);
  let grp = e / DV; // the element's group (a vec4 never straddles two: DG % 4 == 0)
  var dw = T(0.0);
  for (var r = r0; r < r1; r += AHEAD) {
    let row = k * p.R + r;
    var g: array<T, AHEAD>;
    var y: array<T, AHEAD>;
    var z: array<T, AHEAD>;
    var st: array<f32, AHEAD>;
    //@repeat AHEAD
    if (r + $iu < r1) {
      let o = (row + $iu) * EV + e;
      g[$i] = G[o];
      y[$i] = Y[o];
      z[$i] = Z[o];
      st[$i] = Stats[(row + $iu) * p.G + grp];
    }
    //@end
    //@repeat AHEAD
    if (r + $iu < r1) { dw += g[$i] * y[$i] * z[$i] * sigmoid_(z[$i]) * st[$i]; }
    //@end
  }
  Out[idx] = dw;
}
