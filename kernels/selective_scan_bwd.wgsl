// Selective scan (Mamba 1), backward part 2 of 2: the reverse-time sweep. It runs dh_t = C_t·g_t + a_{t+1}·dh_{t+1}
// backwards from dh_T = 0, never needing h_t inside a chunk (the identity in lib/ops/selective_scan.ts), and
// writes
//   DU   = D·g + Δ·Σ_n B·dh                                                     (K, Bt, T, E)
//   DDLT = u·Σ_n B·dh + Σ_{t' >= t in chunk} (g·F - Δ·u·G)_{t'} + Σ_n A·R_{next chunk start}   (K, Bt, T, E)
//   DBP  = partial dB over this workgroup's channels                            (G, K, Bt, T, N)
//   DA  += -Σ_t cΔ_t·Δ_t·u_t·B_t·a_{t+1}·dh_{t+1} + Σ_c (Σ_{t in c} Δ_t)·R_{start of c+1}   (K, Bt, E, N),
//          in place
// with G_t = Σ_n A·B_t·a_{t+1}·dh_{t+1} and R_s = a_s·h_{s-1}·dh_s at chunk starts s (h_{s-1} from HS). Inputs GF, HS, CTOT
// and DA come from selective_scan_bwd_fwd.wgsl. Layout, tiling, prefetching and the repeat markers are as in
// selective_scan_fwd.wgsl; tiles run from last to first.

//@use selective_scan_parts.wgsl constants
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

var<workgroup> sB: array<vec4<f32>, 2u * TT * NP4>;
var<workgroup> sC: array<vec4<f32>, 2u * TT * NP4>;
var<workgroup> sU: array<VE, 2u * TT * WC>;
var<workgroup> sDl: array<VE, 2u * TT * WC>;
var<workgroup> sG: array<VE, 2u * TT * WC>;
var<workgroup> sGF: array<VE, 2u * TT * WC>;
var<workgroup> sP: array<VE, TT * WC * SN>;   // [s][tt][j]: partial Σ_n B·dh of slice s
var<workgroup> sQ: array<VE, TT * WC * SN>;   // [s][tt][j]: partial A-term of dΔ of slice s
var<workgroup> sDB: array<vec4<f32>, WC * PSTR>;  // [j][tt][n / 4]: dB summed over the RE channels of lane j

// load_A / load_HS / store_HS ...: the RE channels of a group from a (..., E, stride) layout.
{{STRIDED}}
// x itself, hidden from the compiler (p.KB < 2^31, so the xor is with 0): Kahan's compensation (t - s) - y is 0 to
// an optimiser that treats float adds as associative, and Mesa's does (measured: the compensation came out 0).
fn opaque(x: VE) -> VE { return bitcast<VE>(bitcast<{{VU}}>(x) ^ {{VU}}(p.KB >> 31u)); }
// Kahan summation of dA (over all T): the value s and its compensation c, which carries the lost low bits. Values
// in and out rather than pointers: naga's SPIR-V backend (the Vulkan path) panics on pointers to array elements
// passed to a function ("Expression [..] is not cached"), which its GLSL backend accepts.
struct Kahan { s: VE, c: VE }
fn kahan(s: VE, c: VE, y0: VE) -> Kahan {
  let y = y0 - c;
  let t = opaque(s + y);
  return Kahan(t, (t - s) - y);
}
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
  var dAc: array<VE, NR>;  // dA's Kahan compensation
  //@unroll_n
  if (live && s * NR + $nu < p.N) { A2[$n] = load_A((k * p.E + gj * RE) * p.N + s * NR + $nu, p.N) * LOG2E; }
  //@end
  var dv = VE(0.0);
  if (live) { dv = Dv[k * p.EV + gj]; }
  var crem = VE(0.0);  // Σ Δ from the chunk start to t (inclusive), counted down
  var q = VE(0.0);     // Σ_{t' >= t in this chunk} of this slice's (g·F [slice 0 only] - Δ·u·G)
  var bnd = VE(0.0);   // Σ_{n in slice} A_n·R_n at the start of the next chunk
  var cpos = (p.T - 1u) % p.L;  // position of t in its chunk (counted down)
  var cidx = (p.T - 1u) / p.L;  // the chunk of t

  var pb: array<f32, PB>;
  var pc: array<f32, PB>;
  var pu: array<VE, PC>;
  var pd: array<VE, PC>;
  var pg: array<VE, PC>;
  var pgf: array<VE, PC>;
  let ntiles = (p.T + TT - 1u) / TT;
  // Iteration it stages the tile loaded during iteration it-1, loads tile ntiles-1-it, computes tile ntiles-it.
  for (var it = 0u; it <= ntiles; it++) {
    if (it > 0u) {
      let sob = ((it - 1u) % 2u) * TT * NP4;  // staging buffers alternate between tiles
      let soc = ((it - 1u) % 2u) * TT * WC;
      //@use selective_scan_parts.wgsl stage_bc
      //@repeat {{PC}}
      if (lid + $mu * WG < TT * WC) {
        sU[soc + lid + $mu * WG] = pu[$m];
        sDl[soc + lid + $mu * WG] = pd[$m];
        sG[soc + lid + $mu * WG] = pg[$m];
        sGF[soc + lid + $mu * WG] = pgf[$m];
      }
      //@end
    }
    workgroupBarrier();
    if (it < ntiles) {
      let tl = (ntiles - 1u - it) * TT;
      //@use selective_scan_parts.wgsl load_bc
      //@repeat {{PC}}
      {
        let i = lid + $mu * WG;
        let t = tl + i / WC;
        let g2 = wid.x * WC + i % WC;
        pu[$m] = VE(0.0);
        pd[$m] = VE(0.0);
        pg[$m] = VE(0.0);
        pgf[$m] = VE(0.0);
        if (i < TT * WC && t < p.T && g2 < p.EV) {
          let o = (rowT + t) * p.EV + g2;
          pu[$m] = U[o];
          pd[$m] = DLT[o];
          pg[$m] = DOUT[o];
          if (HAS_Z) {
            let z = Z[o];
            pg[$m] *= z / (1.0 + exp(-z));
          }
          pgf[$m] = GF[o];
        }
      }
      //@end
    }
    if (it > 0u) {
      let t0 = (ntiles - it) * TT;
      let ob = ((it - 1u) % 2u) * TT * NP4;
      let oc = ((it - 1u) % 2u) * TT * WC;
      for (var tr = TT; tr > 0u; tr--) {
        let tt = tr - 1u;
        let t = t0 + tt;
        // Entering a chunk (at its last step): its Σ Δ, and a fresh suffix sum.
        if (t < p.T && (cpos + 1u == p.L || t + 1u == p.T)) {
          if (live) { crem = CTOT[(row * p.NC + cidx) * p.EV + gj]; }
          q = VE(0.0);
        }
        let dl = sDl[oc + tt * WC + j];
        let du = dl * sU[oc + tt * WC + j];
        let g = sG[oc + tt * WC + j];
        let ncdu = -crem * du;  // -cΔ_t·Δ_t·u_t
        crem -= dl;
        let base = ob + tt * NP4 + s * NR4;
        //@unroll_q
        let b$q = sB[base + $qu];
        let c$q = sC[base + $qu];
        var db$q = vec4<f32>(0.0);
        //@end
        var pbd = VE(0.0);
        var gs = VE(0.0);
        // Steps past T were staged as Δ = u = g = 0: dh = carry = 0 there.
        // The A-terms take the carried a_{t+1}·dh_{t+1} (= dh_t - C_t·g_t), not dh_t: see the identity in
        // lib/ops/selective_scan.ts (with dh_t, fast-decaying states cancelled most of their digits).
        //@unroll_n
        let dh$n = fma(g, VE(c$q.$c), carry[$n]);
        pbd = fma(dh$n, VE(b$q.$c), pbd);
        let bcarry$n = carry[$n] * b$q.$c;
        gs = fma(A2[$n], bcarry$n, gs);
        let k1$n = kahan(dA[$n], dAc[$n], ncdu * bcarry$n); dA[$n] = k1$n.s; dAc[$n] = k1$n.c;
        db$q.$c = hdot(du, dh$n);
        carry[$n] = exp2(dl * A2[$n]) * dh$n;
        //@end
        q = fma(-du * LN2, gs, q);
        if (s == 0u) { q += sGF[oc + tt * WC + j]; }
        sP[(s * TT + tt) * WC + j] = pbd;
        sQ[(s * TT + tt) * WC + j] = q + bnd;
        //@unroll_q
        sDB[j * PSTR + tt * NP4 + s * NR4 + $qu] = db$q;
        //@end
        // At the start s of chunk c >= 1: R_s = a_s·h_{s-1}·dh_s = carry·h_{s-1}, with h_{s-1} saved at the end
        // of chunk c-1. It enters dA weighted by Σ Δ over chunk c-1, and dΔ of every step of chunk c-1.
        if (t < p.T && t > 0u && cpos == 0u) {
          let cp = cidx - 1u;
          var nb = VE(0.0);
          if (live) {
            let wt = CTOT[(row * p.NC + cp) * p.EV + gj];
            //@unroll_n
            if (s * NR + $nu < p.N) {
              let r$n = carry[$n] * load_HS(((row * p.E + gj * RE) * p.NC + cp) * p.N + s * NR + $nu, p.NC * p.N);
              let k2$n = kahan(dA[$n], dAc[$n], wt * r$n); dA[$n] = k2$n.s; dAc[$n] = k2$n.c;
              nb = fma(A2[$n], r$n, nb);
            }
            //@end
          }
          bnd = nb * LN2;
        }
        if (t < p.T) {
          if (cpos == 0u) {
            cpos = p.L - 1u;
            cidx -= 1u;  // wraps below 0 after t = 0, never used then
          } else {
            cpos -= 1u;
          }
        }
      }
      workgroupBarrier();

      // Per (t, channel group j): sum the slices in a fixed order. Thread (j, s) reduces channel group j.
      //@repeat {{PC}}
      {
        let i = lid + $mu * WG;
        let tt = i / WC;
        let t = t0 + tt;
        if (i < TT * WC && t < p.T && live) {
          var pbd = VE(0.0);
          var qq = VE(0.0);
          for (var r = 0u; r < SN; r++) {
            pbd += sP[(r * TT + tt) * WC + j];
            qq += sQ[(r * TT + tt) * WC + j];
          }
          let o = (rowT + t) * p.EV + gj;
          DU[o] = fma(dv, sG[oc + i], sDl[oc + i] * pbd);
          DDLT[o] = fma(sU[oc + i], pbd, qq);
        }
      }
      //@end
      //@use selective_scan_parts.wgsl lane_sum SRC=sDB DST=DBP
    }
    // No barrier here: see selective_scan_fwd.wgsl.
  }

  if (live) {
    //@unroll_n
    if (s * NR + $nu < p.N) {
      let o$n = (row * p.E + gj * RE) * p.N + s * NR + $nu;
      store_DA(o$n, p.N, load_DA(o$n, p.N) + (dA[$n] - dAc[$n]));
    }
    //@end
  }
}
