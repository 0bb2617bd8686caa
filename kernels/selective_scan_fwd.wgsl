// Selective scan (Mamba 1), forward: y = (Σ_n C_t·h_t + D·u_t) ⊙ silu(z_t), h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·B_t·u_t.
// The design and the layout are explained in lib/ops/selective_scan.ts; in short:
// - a workgroup owns one row (k, b) and WC·RE consecutive channels; thread (j, s) owns channels
//   (group·WC + j)·RE .. +RE-1 (one VE vector) and the NR states s·NR .. s·NR+NR-1 of each, in registers;
// - it walks T sequentially in tiles of TT steps: B_t, C_t of the tile (shared by every channel) and u, Δ of
//   the workgroup's channels are staged in workgroup memory, each thread advances its RE·NR states, and the SN
//   state slices' partial y are summed in a fixed order (so results are bit-identical run to run).
// Lines between `//@unroll_n` and `//@end` are repeated for n = 0..NR-1 by the host ($n = n, $q = n / 4,
// $c = the component x|y|z|w of n % 4); `//@unroll_q` repeats for q = 0..NR/4-1. Constant indices keep the
// per-thread arrays in registers on every driver.
// Placeholders: VE (f32 | vec2<f32> | vec4<f32>), RE, NR, SN, WC, TT, HAS_Z, STRIDED (load_A, made by the host).

alias VE = {{VE}};
const RE: u32 = {{RE}}u;    // channels per thread (the width of VE)
const NR: u32 = {{NR}}u;    // states per thread (a multiple of 4)
const NR4: u32 = NR / 4u;
const SN: u32 = {{SN}}u;    // state slices: threads sharing one channel group
const NP4: u32 = NR4 * SN;  // padded N / 4
const WC: u32 = {{WC}}u;    // channel groups (threads per slice) per workgroup
const WG: u32 = WC * SN;    // workgroup size
const TT: u32 = {{TT}}u;    // time steps per tile
const HAS_Z: bool = {{HAS_Z}};
const LOG2E: f32 = 1.4426950408889634;

// KB = K·Bt rows; EV = E / RE channel groups per row.
struct Params { T: u32, E: u32, N: u32, EV: u32, KB: u32, Bt: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> U: array<VE>;      // (K, Bt, T, E)
@group(0) @binding(2) var<storage, read> DLT: array<VE>;    // (K, Bt, T, E), Δ > 0
@group(0) @binding(3) var<storage, read> A: array<f32>;     // (K, E, N), A < 0
@group(0) @binding(4) var<storage, read> Bm: array<f32>;    // (K, Bt, T, N)
@group(0) @binding(5) var<storage, read> Cm: array<f32>;    // (K, Bt, T, N)
@group(0) @binding(6) var<storage, read> Dv: array<VE>;     // (K, E)
@group(0) @binding(7) var<storage, read> Z: array<VE>;      // (K, Bt, T, E), bound to U when absent
@group(0) @binding(8) var<storage, read_write> Y: array<VE>; // (K, Bt, T, E)

var<workgroup> sB: array<vec4<f32>, TT * NP4>;   // [tt][n / 4]
var<workgroup> sC: array<vec4<f32>, TT * NP4>;
var<workgroup> sU: array<VE, TT * WC>;           // [tt][j]
var<workgroup> sDl: array<VE, TT * WC>;
var<workgroup> sY: array<VE, TT * WC * SN>;      // [s][tt][j]: partial y of slice s

// load_A / load_HS / store_HS ...: the RE channels of a group from a (..., E, stride) layout.
{{STRIDED}}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y + wid.z * nwg.y;  // k·Bt + b
  if (row >= p.KB) { return; }      // uniform per workgroup
  let k = row / p.Bt;
  let j = lid % WC;
  let s = lid / WC;
  let gj = wid.x * WC + j;
  let live = gj < p.EV;
  let rowT = row * p.T;

  // exp(Δ·A) = exp2(Δ·A·log2 e): A2 holds A·log2 e; padded states keep A2 = 0, B = C = 0, so they stay 0.
  var A2: array<VE, NR>;
  var h: array<VE, NR>;
  //@unroll_n
  if (live && s * NR + $nu < p.N) { A2[$n] = load_A((k * p.E + gj * RE) * p.N + s * NR + $nu, p.N) * LOG2E; }
  //@end

  for (var t0 = 0u; t0 < p.T; t0 += TT) {
    for (var i = lid; i < TT * NP4 * 4u; i += WG) {
      let t = t0 + i / (NP4 * 4u);
      let n = i % (NP4 * 4u);
      var b = 0.0;
      var c = 0.0;
      if (t < p.T && n < p.N) {
        let o = (rowT + t) * p.N + n;
        b = Bm[o];
        c = Cm[o];
      }
      sB[i / 4u][i % 4u] = b;
      sC[i / 4u][i % 4u] = c;
    }
    for (var i = lid; i < TT * WC; i += WG) {
      let t = t0 + i / WC;
      let g2 = wid.x * WC + i % WC;
      var uu = VE(0.0);
      var dd = VE(0.0);
      if (t < p.T && g2 < p.EV) {
        let o = (rowT + t) * p.EV + g2;
        uu = U[o];
        dd = DLT[o];
      }
      sU[i] = uu;
      sDl[i] = dd;
    }
    workgroupBarrier();

    // Steps past T were staged as Δ = u = 0: exp(0) = 1 and no input, so the states are unchanged.
    for (var tt = 0u; tt < TT; tt++) {
      let dl = sDl[tt * WC + j];
      let du = dl * sU[tt * WC + j];
      let base = tt * NP4 + s * NR4;
      //@unroll_q
      let b$q = sB[base + $qu];
      let c$q = sC[base + $qu];
      //@end
      var y = VE(0.0);
      //@unroll_n
      h[$n] = fma(exp2(dl * A2[$n]), h[$n], du * b$q.$c);
      y = fma(h[$n], VE(c$q.$c), y);
      //@end
      sY[(s * TT + tt) * WC + j] = y;
    }
    workgroupBarrier();

    // y = D·u + Σ_s partial_s (fixed order), gated by silu(z).
    for (var i = lid; i < TT * WC; i += WG) {
      let t = t0 + i / WC;
      let jj = i % WC;
      let g2 = wid.x * WC + jj;
      if (t < p.T && g2 < p.EV) {
        var y = Dv[k * p.EV + g2] * sU[i];
        for (var q = 0u; q < SN; q++) { y += sY[(q * TT + i / WC) * WC + jj]; }
        let o = (rowT + t) * p.EV + g2;
        if (HAS_Z) {
          let z = Z[o];
          y = y * z / (1.0 + exp(-z));
        }
        Y[o] = y;
      }
    }
    workgroupBarrier();
  }
}
