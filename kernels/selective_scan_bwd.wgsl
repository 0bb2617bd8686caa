// Selective scan (Mamba 1), backward part 2 of 2: the reverse-time sweep. It runs dh_t = C_t·g_t + a_{t+1}·dh_{t+1}
// backwards from dh_T = 0, never needing h_t inside a chunk (the identity in lib/ops/selective_scan.ts), and
// writes
//   DU   = D·g + Δ·Σ_n B·dh                                                     (K, Bt, T, E)
//   DDLT = u·Σ_n B·dh + Σ_{t' >= t in chunk} (g·F - Δ·u·G)_{t'} + Σ_n A·R_{next chunk start}   (K, Bt, T, E)
//   DBP  = partial dB over this workgroup's channels                            (G, K, Bt, T, N)
//   DA  += -Σ_t cΔ_t·Δ_t·u_t·B_t·dh_t + Σ_c (Σ_{t in c} Δ_t)·R_{start of c+1}   (K, Bt, E, N), in place
// with G_t = Σ_n A·B_t·dh_t and R_s = a_s·h_{s-1}·dh_s at chunk starts s (h_{s-1} from HS). Inputs GF, HS, CTOT
// and DA come from selective_scan_bwd_fwd.wgsl. Layout, tiling and unroll markers as in selective_scan_fwd.wgsl.

alias VE = {{VE}};
const RE: u32 = {{RE}}u;
const NR: u32 = {{NR}}u;
const NR4: u32 = NR / 4u;
const SN: u32 = {{SN}}u;
const NP4: u32 = NR4 * SN;
const WC: u32 = {{WC}}u;
const WG: u32 = WC * SN;
const TT: u32 = {{TT}}u;
const HAS_Z: bool = {{HAS_Z}};
const PSTR: u32 = {{PSTR}}u;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

struct Params { T: u32, E: u32, N: u32, EV: u32, KB: u32, Bt: u32, L: u32, NC: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> U: array<VE>;
@group(0) @binding(2) var<storage, read> DLT: array<VE>;
@group(0) @binding(3) var<storage, read> A: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read> Cm: array<f32>;
@group(0) @binding(6) var<storage, read> Dv: array<VE>;
@group(0) @binding(7) var<storage, read> Z: array<VE>;
@group(0) @binding(8) var<storage, read> DOUT: array<VE>;
@group(0) @binding(9) var<storage, read> GF: array<VE>;
@group(0) @binding(10) var<storage, read> HS: array<f32>;
@group(0) @binding(11) var<storage, read> CTOT: array<VE>;
@group(0) @binding(12) var<storage, read_write> DA: array<f32>;
@group(0) @binding(13) var<storage, read_write> DU: array<VE>;
@group(0) @binding(14) var<storage, read_write> DDLT: array<VE>;
@group(0) @binding(15) var<storage, read_write> DBP: array<f32>;

var<workgroup> sB: array<vec4<f32>, TT * NP4>;
var<workgroup> sC: array<vec4<f32>, TT * NP4>;
var<workgroup> sU: array<VE, TT * WC>;
var<workgroup> sDl: array<VE, TT * WC>;
var<workgroup> sG: array<VE, TT * WC>;
var<workgroup> sGF: array<VE, TT * WC>;
var<workgroup> sP: array<VE, TT * WC * SN>;   // [s][tt][j]: partial Σ_n B·dh of slice s
var<workgroup> sQ: array<VE, TT * WC * SN>;   // [s][tt][j]: partial A-term of dΔ of slice s
var<workgroup> sDB: array<vec4<f32>, WC * PSTR>;  // [j][tt][n / 4]: dB summed over the RE channels of lane j

// load_A / load_HS / store_HS ...: the RE channels of a group from a (..., E, stride) layout.
{{STRIDED}}
fn hdot(a: VE, b: VE) -> f32 { return {{HDOT}}; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y + wid.z * nwg.y;
  if (row >= p.KB) { return; }
  let k = row / p.Bt;
  let j = lid % WC;
  let s = lid / WC;
  let gj = wid.x * WC + j;
  let live = gj < p.EV;
  let rowT = row * p.T;

  var A2: array<VE, NR>;
  var carry: array<VE, NR>;  // a_{t+1}·dh_{t+1}
  var dA: array<VE, NR>;
  //@unroll_n
  if (live && s * NR + $nu < p.N) { A2[$n] = load_A((k * p.E + gj * RE) * p.N + s * NR + $nu, p.N) * LOG2E; }
  //@end
  var crem = VE(0.0);  // Σ Δ from the chunk start to t (inclusive), counted down
  var q = VE(0.0);     // Σ_{t' >= t in this chunk} of this slice's (g·F [slice 0 only] - Δ·u·G)
  var bnd = VE(0.0);   // Σ_{n in slice} A_n·R_n at the start of the next chunk

  let ntiles = (p.T + TT - 1u) / TT;
  for (var it = ntiles; it > 0u; it--) {
    let t0 = (it - 1u) * TT;
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
      var g = VE(0.0);
      var gf = VE(0.0);
      if (t < p.T && g2 < p.EV) {
        let o = (rowT + t) * p.EV + g2;
        uu = U[o];
        dd = DLT[o];
        g = DOUT[o];
        if (HAS_Z) {
          let z = Z[o];
          g = g * z / (1.0 + exp(-z));
        }
        gf = GF[o];
      }
      sU[i] = uu;
      sDl[i] = dd;
      sG[i] = g;
      sGF[i] = gf;
    }
    workgroupBarrier();

    for (var tr = TT; tr > 0u; tr--) {
      let tt = tr - 1u;
      let t = t0 + tt;
      // Entering a chunk (at its last step): its Σ Δ, and a fresh suffix sum.
      if (t < p.T && ((t + 1u) % p.L == 0u || t + 1u == p.T)) {
        if (live) { crem = CTOT[(row * p.NC + t / p.L) * p.EV + gj]; }
        q = VE(0.0);
      }
      let dl = sDl[tt * WC + j];
      let du = dl * sU[tt * WC + j];
      let g = sG[tt * WC + j];
      let ncdu = -crem * du;  // -cΔ_t·Δ_t·u_t
      crem -= dl;
      let base = tt * NP4 + s * NR4;
      //@unroll_q
      let b$q = sB[base + $qu];
      let c$q = sC[base + $qu];
      var db$q = vec4<f32>(0.0);
      //@end
      var pb = VE(0.0);
      var gs = VE(0.0);
      // Steps past T were staged as Δ = u = g = 0: dh = carry = 0 there.
      //@unroll_n
      let dh$n = fma(g, VE(c$q.$c), carry[$n]);
      let bdh$n = dh$n * b$q.$c;
      pb += bdh$n;
      gs = fma(A2[$n], bdh$n, gs);
      dA[$n] = fma(ncdu, bdh$n, dA[$n]);
      db$q.$c = hdot(du, dh$n);
      carry[$n] = exp2(dl * A2[$n]) * dh$n;
      //@end
      q = fma(-du * LN2, gs, q);
      if (s == 0u) { q += sGF[tt * WC + j]; }
      sP[(s * TT + tt) * WC + j] = pb;
      sQ[(s * TT + tt) * WC + j] = q + bnd;
      //@unroll_q
      sDB[j * PSTR + tt * NP4 + s * NR4 + $qu] = db$q;
      //@end
      // At the start s of chunk c >= 1: R_s = a_s·h_{s-1}·dh_s = carry·h_{s-1}, with h_{s-1} saved at the end of
      // chunk c-1. It enters dA weighted by Σ Δ over chunk c-1, and dΔ of every step of chunk c-1.
      if (t < p.T && t > 0u && t % p.L == 0u) {
        let cp = t / p.L - 1u;
        var nb = VE(0.0);
        if (live) {
          let wt = CTOT[(row * p.NC + cp) * p.EV + gj];
          //@unroll_n
          if (s * NR + $nu < p.N) {
            let r$n = carry[$n] * load_HS(((row * p.E + gj * RE) * p.NC + cp) * p.N + s * NR + $nu, p.NC * p.N);
            dA[$n] = fma(wt, r$n, dA[$n]);
            nb = fma(A2[$n], r$n, nb);
          }
          //@end
        }
        bnd = nb * LN2;
      }
    }
    workgroupBarrier();

    for (var i = lid; i < TT * WC; i += WG) {
      let tt = i / WC;
      let t = t0 + tt;
      let jj = i % WC;
      let g2 = wid.x * WC + jj;
      if (t < p.T && g2 < p.EV) {
        var pb = VE(0.0);
        var qq = VE(0.0);
        for (var r = 0u; r < SN; r++) {
          pb += sP[(r * TT + tt) * WC + jj];
          qq += sQ[(r * TT + tt) * WC + jj];
        }
        let o = (rowT + t) * p.EV + g2;
        DU[o] = fma(Dv[k * p.EV + g2], sG[i], sDl[i] * pb);
        DDLT[o] = fma(sU[i], pb, qq);
      }
    }
    for (var i = lid; i < TT * NP4; i += WG) {
      let t = t0 + i / NP4;
      if (t < p.T) {
        var v = vec4<f32>(0.0);
        for (var jj = 0u; jj < WC; jj++) { v += sDB[jj * PSTR + i]; }
        let n0 = (i % NP4) * 4u;
        let o = ((wid.x * p.KB + row) * p.T + t) * p.N;
        for (var c = 0u; c < 4u; c++) {
          if (n0 + c < p.N) { DBP[o + n0 + c] = v[c]; }
        }
      }
    }
    workgroupBarrier();
  }

  if (live) {
    //@unroll_n
    if (s * NR + $nu < p.N) {
      let o$n = (row * p.E + gj * RE) * p.N + s * NR + $nu;
      store_DA(o$n, p.N, load_DA(o$n, p.N) + dA[$n]);
    }
    //@end
  }
}
