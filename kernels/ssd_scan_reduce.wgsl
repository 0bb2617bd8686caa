// Mamba 2 scan (SSD), backward: the fixed-order reductions that finish the gradients (no atomics, so the same
// inputs give bit-identical gradients).
//   sum_heads: dB (or dC) = Σ over the HG heads of each group of the per-head partials, (rows, T, H, N) → (…, G, N)
//   sum_batch: dA, dD = Σ over the batch of the per-(k, b, h) partials, (K, Bt, H, 2) → (K, H), (K, H)

struct Params {
  n: u32, // outputs of this dispatch
  G: u32,
  HG: u32,
  N: u32,
  off: u32, // sum_heads: output element of this dispatch's first output (row offset · T·G·N)
  Bt: u32,
  H: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> SRC: array<f32>;
@group(0) @binding(2) var<storage, read_write> DST: array<f32>;
@group(0) @binding(3) var<storage, read_write> DST2: array<f32>;

// One thread per output (row, t, g, n); the heads of group g are g·HG .. g·HG + HG − 1.
@compute @workgroup_size(256)
fn sum_heads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= prm.n) { return; }
  let n = i % prm.N;
  let r = i / prm.N; // (row·T + t)·G + g
  let g = r % prm.G;
  let rt = r / prm.G; // row·T + t
  let H = prm.G * prm.HG;
  var acc = 0.0;
  for (var j = 0u; j < prm.HG; j++) { acc += SRC[(rt * H + g * prm.HG + j) * prm.N + n]; }
  DST[prm.off + i] = acc;
}

// One thread per (k, h): SRC is (K, Bt, H, 2) with (dA, dD) partials; DST = dA (K, H), DST2 = dD (K, H).
@compute @workgroup_size(256)
fn sum_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= prm.n) { return; }
  let h = i % prm.H;
  let k = i / prm.H;
  var da = 0.0;
  var dd = 0.0;
  for (var b = 0u; b < prm.Bt; b++) {
    let j = ((k * prm.Bt + b) * prm.H + h) * 2u;
    da += SRC[j];
    dd += SRC[j + 1u];
  }
  DST[i] = da;
  DST2[i] = dd;
}
