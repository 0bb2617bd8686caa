// Masked cross-entropy over logits (K, R, V) with targets (K, R) i32 and mask (K, R) f32, and argmax over rows.
// Rows are flat: row = k·R + r. Targets outside [0, V) are clamped to [0, V-1] (kernels cannot report them).
// A row whose mask is 0 contributes exactly 0 to the loss and gets a zero gradient even if its logits are not finite
// (padding must not poison the loss).
// Every reduction is a fixed-order strided loop plus a shared-memory tree: deterministic, no atomics.

// A dispatch of a row kernel may cover a chunk of the rows (tensors larger than one binding): the per-row tensors
// are bound from row `row0`, and the dispatch sees `rows` rows from there (all K·R rows from 0 otherwise).

struct Params { K: u32, R: u32, V: u32, row0: u32, rows: u32 }

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;
var<workgroup> partial_idx: array<u32, 256>;

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

fn workgroup_row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }
fn clamp_target(t: i32) -> u32 { return u32(clamp(t, 0, i32(p.V) - 1)); }
fn denominator(msum: f32) -> f32 { return max(msum, 1e-9); }

// ---- forward, pass 1: per row, lse = m + log Σ exp(x - m) with m = max x; row loss = mask·(lse - x[target]) ----
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(256)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = workgroup_row(wid, nwg);
  if (row >= p.rows) { return; }  // uniform per workgroup
  let base = row * p.V;
  var m = -3.4028235e38;
  for (var v = lid; v < p.V; v += 256u) { m = max(m, X[base + v]); }
  m = reduce_(lid, m, 1u);
  var s = 0.0;
  for (var v = lid; v < p.V; v += 256u) { s += exp(X[base + v] - m); }
  let log_s = log(reduce_(lid, s, 0u));
  if (lid == 0u) {
    let w = mask[row];
    LSE[row] = m + log_s;
    // (m - x_t) + log s rather than lse - x_t: exact when x_t is the max, however large the logits
    row_loss[row] = select(0.0, w * ((m - X[base + clamp_target(targets[row])]) + log_s), w != 0.0);
  }
}

// ---- forward, pass 2: per run k, loss = Σ_r row_loss / max(Σ_r mask, 1e-9); also writes Σ_r mask ----
@group(0) @binding(1) var<storage, read> RL: array<f32>;
@group(0) @binding(2) var<storage, read> RM: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> msum: array<f32>;

@compute @workgroup_size(256)
fn runs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let k = workgroup_row(wid, nwg);
  if (k >= p.K) { return; }
  var a = 0.0;
  var b = 0.0;
  for (var r = lid; r < p.R; r += 256u) {
    a += RL[k * p.R + r];
    b += RM[k * p.R + r];
  }
  let num = reduce_(lid, a, 0u);
  let den = reduce_(lid, b, 0u);
  if (lid == 0u) {
    loss[k] = num / denominator(den);
    msum[k] = den;
  }
}

// ---- backward: d logits[k, r, v] = g_k · mask_r / max(Σ mask_k, 1e-9) · (exp(x - lse_r) - [v = target_r]) ----
@group(0) @binding(1) var<storage, read> BX: array<f32>;
@group(0) @binding(2) var<storage, read> BT: array<i32>;
@group(0) @binding(3) var<storage, read> BM: array<f32>;
@group(0) @binding(4) var<storage, read> BLSE: array<f32>;
@group(0) @binding(5) var<storage, read> BMSUM: array<f32>;
@group(0) @binding(6) var<storage, read> BG: array<f32>;
@group(0) @binding(7) var<storage, read_write> DX: array<f32>;

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.rows * p.V) { return; }
  let row = i / p.V;
  let v = i % p.V;
  let k = (row + p.row0) / p.R;
  let w = BM[row];
  let onehot = select(0.0, 1.0, v == clamp_target(BT[row]));
  let d = BG[k] * w / denominator(BMSUM[k]) * (exp(BX[i] - BLSE[row]) - onehot);
  DX[i] = select(0.0, d, w != 0.0);
}

// ---- argmax over rows (p.rows rows of p.V; p.K, p.R unused): the first index of the maximum ----
// Each thread scans its strided slice in increasing index (strict > keeps the first), then the tree keeps the
// smaller index on ties. NaNs are not ordered: a row containing NaN has an unspecified result.
@group(0) @binding(1) var<storage, read> AX: array<f32>;
@group(0) @binding(2) var<storage, read_write> AI: array<i32>;

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = workgroup_row(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.V;
  var best = -3.4028235e38;
  var best_i = 0xffffffffu;  // threads without elements lose every tie
  for (var v = lid; v < p.V; v += 256u) {
    let x = AX[base + v];
    if (best_i == 0xffffffffu || x > best) {
      best = x;
      best_i = v;
    }
  }
  partial[lid] = best;
  partial_idx[lid] = best_i;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let a = partial[lid];
      let b = partial[lid + s];
      let ai = partial_idx[lid];
      let bi = partial_idx[lid + s];
      // an empty slice (index 0xffffffff) never wins, even against -inf
      if (bi != 0xffffffffu && (ai == 0xffffffffu || b > a || (b == a && bi < ai))) {
        partial[lid] = b;
        partial_idx[lid] = bi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { AI[row] = i32(partial_idx[0]); }
}
