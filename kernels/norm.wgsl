// RMSNorm and LayerNorm over the last axis D of `rows` rows; K runs of R rows each (row = k·R + r), so the weight
// and bias row of a data row is k = row / R.
//   RMSNorm:   y = x̂ · w,      x̂ = x · rstd,        rstd = 1 / sqrt(mean(x²) + eps)
//   LayerNorm: y = x̂ · w + b,  x̂ = (x − μ) · rstd,  rstd = 1 / sqrt(mean((x − μ)²) + eps)
//
// Elements are of type T: vec4<f32> when D % 4 == 0 (16-byte loads and stores), else f32; a row is DV = D / 4 (or
// D) of them. Row kernels (forward, backward_dx): 256 threads a workgroup, TPR of them to a row (a power of two
// the host picks from D, lib/ops/norm.ts `rowLayout`), so RPW = 256 / TPR rows a workgroup. Lane l of a row holds
// elements l + j·TPR (j < NV) in registers: for each j the row's lanes touch consecutive addresses, and x (and g)
// are read from memory once. A row of more than TPR·NV elements (FITS false) is walked in chunks of TPR·NV
// elements, and read once per pass instead.
// A row sum: each lane adds its elements in order (over the chunks, then j; a vec4's lanes as (x + y) + (z + w)),
// writes that partial to workgroup memory, and after one barrier every lane of the row adds the row's TPR partials
// in the fixed order of `rowTotal`. The order depends on D only, so the results are the same bits every run.
//
// Placeholders (lib/ops/norm.ts): CENTER true for LayerNorm (subtract μ, add b), false for RMSNorm (μ is 0); T and
// its horizontal sum HSUM; D; DV; TPR; NV; FITS; AHEAD.
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
// row); the dw stage writes partials [first, last) (in elements T) of its (K, S, D) output.

struct Params { rows: u32, R: u32, eps: f32, chunk: u32, S: u32, row0: u32, first: u32, last: u32 }

alias T = {{T}};

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<T>;
@group(0) @binding(2) var<storage, read> Wt: array<T>;
@group(0) @binding(3) var<storage, read> Bs: array<T>;
@group(0) @binding(4) var<storage, read> G: array<T>;
@group(0) @binding(5) var<storage, read_write> Stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> Out: array<T>;
@group(0) @binding(7) var<storage, read_write> Out2: array<T>;

const CENTER: bool = {{CENTER}};
const D: u32 = {{D}}u;
const DV: u32 = {{DV}}u; // elements T per row
const TPR: u32 = {{TPR}}u; // threads per row
const NV: u32 = {{NV}}u; // elements per thread per chunk, held in registers
const FITS: bool = {{FITS}}; // DV <= TPR·NV: one chunk, the whole row in registers
const RPW: u32 = 256u / TPR; // rows per workgroup
const CH: u32 = TPR * NV; // elements per chunk
const AHEAD: u32 = {{AHEAD}}u; // rows whose loads the dw stage issues at once (lib/ops/norm.ts)

// The lanes' partials of one sum per half: [0, 256) and [256, 512), so that two sums need no barrier between.
var<workgroup> red: array<f32, 512>;

fn hsum(v: T) -> f32 { {{HSUM}} }

//@use norm_parts.wgsl row_total

// The sum of a over the lanes of the thread's row, through half h of `red` (each half used once per dispatch).
// One barrier; call from uniform control flow (every thread of the workgroup). Every lane gets the total.
fn rowSum(lid: u32, a: f32, h: u32) -> f32 {
  if (TPR == 1u) { return a; }
  red[h * 256u + lid] = a;
  workgroupBarrier();
  return rowTotal(h * 256u + lid - lid % TPR);
}

// The sums of a and b over the lanes of the thread's row, with one barrier (both halves of `red`).
fn rowSum2(lid: u32, a: f32, b: f32) -> vec2<f32> {
  if (TPR == 1u) { return vec2<f32>(a, b); }
  red[lid] = a;
  red[256u + lid] = b;
  workgroupBarrier();
  let first = lid - lid % TPR;
  return vec2<f32>(rowTotal(first), rowTotal(256u + first));
}

//@use norm_parts.wgsl in_row

//@use norm_parts.wgsl load FN=loadX BUF=X

//@use norm_parts.wgsl load FN=loadW BUF=Wt

//@use norm_parts.wgsl load FN=loadB BUF=Bs

//@use norm_parts.wgsl load_gw

// RPW rows a workgroup. μ first, then the variance about μ (two passes over the row, in registers: the one-pass
// E[x²] − E[x]² cancels catastrophically in f32 when |μ| ≫ σ). Saves [μ, rstd] for the backward.
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % TPR;
  let row = (wid.x + wid.y * nwg.x) * RPW + lid / TPR;
  let live = row < p.rows; // dead rows of the last workgroup still reach the barriers
  let at = row * DV + lane;
  let wat = ((row + p.row0) / p.R) * DV + lane;
  let n = f32(D);
  var xs: array<T, NV>;
  var ws: array<T, NV>; // the run's weight and bias, loaded with x so that the output waits on no load
  var bs: array<T, NV>;
  if (FITS) {
    xs = loadX(at, lane, 0u, live);
    ws = loadW(wat, lane, 0u, live);
    if (CENTER) { bs = loadB(wat, lane, 0u, live); }
  }
  var mu = 0.0;
  if (CENTER) {
    var s = T(0.0);
    for (var c = 0u; c < DV; c += CH) {
      if (!FITS) { xs = loadX(at, lane, c, live); }
      //@repeat NV
      s += xs[$i];
      //@end
    }
    mu = rowSum(lid, hsum(s), 0u) / n;
  }
  var q = T(0.0);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) { xs = loadX(at, lane, c, live); }
    //@repeat NV
    { let v = select(T(0.0), xs[$i] - mu, inRow(lane, c, $iu)); q += v * v; }
    //@end
  }
  let rstd = inverseSqrt(rowSum(lid, hsum(q), 1u) / n + p.eps);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      xs = loadX(at, lane, c, live);
      ws = loadW(wat, lane, c, live);
      if (CENTER) { bs = loadB(wat, lane, c, live); }
    }
    //@repeat NV
    if (live && inRow(lane, c, $iu)) {
      var y = (xs[$i] - mu) * rstd * ws[$i];
      if (CENTER) { y += bs[$i]; }
      Out[at + c + $iu * TPR] = y;
    }
    //@end
  }
  if (live && lane == 0u) { Stats[row] = vec2<f32>(mu, rstd); }
}

// dx, RPW rows a workgroup. With ĝ = g·w:
//   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))   (LayerNorm)
//   dx = rstd · (ĝ − x̂ · mean(ĝ · x̂))             (RMSNorm)
// x̂ is recomputed from x and the saved [μ, rstd] (cheaper than storing it); x and ĝ stay in registers.
@compute @workgroup_size(256)
fn backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % TPR;
  let row = (wid.x + wid.y * nwg.x) * RPW + lid / TPR;
  let live = row < p.rows;
  let at = row * DV + lane;
  let wat = ((row + p.row0) / p.R) * DV + lane;
  let n = f32(D);
  var st = vec2<f32>(0.0, 0.0);
  if (live) { st = Stats[row]; }
  let mu = st.x;
  let rstd = st.y;
  var xs: array<T, NV>;
  var gs: array<T, NV>;
  if (FITS) {
    xs = loadX(at, lane, 0u, live);
    gs = loadGW(at, wat, lane, 0u, live);
  }
  var sg = T(0.0);
  var sgx = T(0.0);
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      xs = loadX(at, lane, c, live);
      gs = loadGW(at, wat, lane, c, live);
    }
    //@repeat NV
    sg += gs[$i];
    sgx += gs[$i] * (xs[$i] - mu) * rstd;
    //@end
  }
  var mg = 0.0;
  var mgx = 0.0;
  if (CENTER) {
    let sums = rowSum2(lid, hsum(sg), hsum(sgx));
    mg = sums.x / n;
    mgx = sums.y / n;
  } else {
    mgx = rowSum(lid, hsum(sgx), 0u) / n;
  }
  for (var c = 0u; c < DV; c += CH) {
    if (!FITS) {
      xs = loadX(at, lane, c, live);
      gs = loadGW(at, wat, lane, c, live);
    }
    //@repeat NV
    if (live && inRow(lane, c, $iu)) {
      let xh = (xs[$i] - mu) * rstd;
      Out[at + c + $iu * TPR] = rstd * (gs[$i] - mg - xh * mgx);
    }
    //@end
  }
}

// Stage 1 of dw = Σ_rows g·x̂ and db = Σ_rows g per run, without atomics: thread (k, s, e) (e an element T of the
// row) sums rows [s·chunk, min((s+1)·chunk, R)) of run k in order into the partials (K, S, D); the host then sums
// the S partials of each (k, d) in order (reduce.wgsl `cols`). Threads adjacent in e read adjacent addresses.
// The loads of AHEAD rows are issued before their adds, which still run in row order (the same sums in the same
// order as one row at a time): a thread's rows were otherwise one memory round trip apart, and this grid has few
// threads (K·√R·DV: 21 k at K 4, R 7040, D 256).
fn partials(idx: u32) -> array<T, 2> {
  let e = idx % DV;
  let ks = idx / DV;
  let s = ks % p.S;
  let k = ks / p.S;
  let r0 = s * p.chunk;
  let r1 = min(r0 + p.chunk, p.R);
  var dw = T(0.0);
  var db = T(0.0);
  for (var r = r0; r < r1; r += AHEAD) {
    let row = k * p.R + r - p.row0;
    var g: array<T, AHEAD>;
    var x: array<T, AHEAD>;
    var st: array<vec2<f32>, AHEAD>;
    //@repeat AHEAD
    if (r + $iu < r1) {
      g[$i] = G[(row + $iu) * DV + e];
      x[$i] = X[(row + $iu) * DV + e];
      st[$i] = Stats[row + $iu];
    }
    //@end
    //@repeat AHEAD
    if (r + $iu < r1) {
      dw += g[$i] * (x[$i] - st[$i].x) * st[$i].y;
      db += g[$i];
    }
    //@end
  }
  return array<T, 2>(dw, db);
}

@compute @workgroup_size(256)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = p.first + gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.last) { return; }
  Out[idx] = partials(idx)[0];
}

@compute @workgroup_size(256)
fn backward_dwdb(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = p.first + gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.last) { return; }
  let v = partials(idx);
  Out[idx] = v[0];
  Out2[idx] = v[1];
}
