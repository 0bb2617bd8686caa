// Selective scan (Mamba 1), backward part 1 of 2: the forward-in-time sweep. It recomputes the states h_t from
// h_{-1} = 0 (the forward saved nothing) and produces everything of the gradient that needs h_t but not dh_t:
//   GF   = g_t·F_t, F_t = Σ_n A_n C_t[n] a_t h_{t-1}[n]  (K, Bt, T, E)  for dΔ in the reverse sweep
//   DZ   = dout·(Σ_n C h + D u)·silu'(z)              (K, Bt, T, E)   (only with z)
//   HS   = h at the end of chunk c, c < NC-1           (K, Bt, E, NC, N) for the chunk-boundary terms
//   CTOT = Σ_{t in chunk c} Δ_t                        (K, Bt, NC, E)
//   DCP  = partial dC over this workgroup's channels   (G, K, Bt, T, N)
//   DA   = Σ_t cΔ_t·g_t·C_t[n]·a_t·h_{t-1}[n]         (K, Bt, E, N)   (cΔ: Δ summed from the chunk start)
//   DDP  = Σ_t g_t·u_t                                 (K, Bt, E)
// with g = dout·silu(z) (or dout). The derivation is in lib/ops/selective_scan.ts. Layout, tiling, prefetching
// and the repeat markers are as in selective_scan_fwd.wgsl.

//@use selective_scan_parts.wgsl constants
const YN: u32 = {{YN}}u;           // TT·WC·SN with z, else 1 (the partial y is only needed for dz)
const PSTR: u32 = {{PSTR}}u;       // TT·NP4 rounded up to odd: row stride of sDC (no bank conflicts)
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
@group(0) @binding(9) var<storage, read_write> GF: array<VE>;
@group(0) @binding(10) var<storage, read_write> DZ: array<VE>;
@group(0) @binding(11) var<storage, read_write> HS: array<f32>;
@group(0) @binding(12) var<storage, read_write> CTOT: array<VE>;
@group(0) @binding(13) var<storage, read_write> DCP: array<f32>;
@group(0) @binding(14) var<storage, read_write> DA: array<f32>;
@group(0) @binding(15) var<storage, read_write> DDP: array<VE>;

var<workgroup> sB: array<vec4<f32>, 2u * TT * NP4>;
var<workgroup> sC: array<vec4<f32>, 2u * TT * NP4>;
var<workgroup> sU: array<VE, 2u * TT * WC>;
var<workgroup> sDl: array<VE, 2u * TT * WC>;
var<workgroup> sG: array<VE, 2u * TT * WC>;
var<workgroup> sDZF: array<VE, 2u * {{ZN}}>;       // [tt][j]: dout·silu'(z), so dz = sDZF·y (TT·WC with z, else 1)
var<workgroup> sF: array<VE, TT * WC * SN>;   // [s][tt][j]: partial Σ_n A2·C·h of slice s
var<workgroup> sY: array<VE, YN>;             // [s][tt][j]: partial Σ_n C·h of slice s
var<workgroup> sDC: array<vec4<f32>, WC * PSTR>;  // [j][tt][n / 4]: dC summed over the RE channels of lane j

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
fn sigmoid_(x: VE) -> VE { return 1.0 / (1.0 + exp(-x)); }

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
  var h: array<VE, NR>;
  var dA: array<VE, NR>;
  var dAc: array<VE, NR>;  // dA's Kahan compensation
  //@unroll_n
  if (live && s * NR + $nu < p.N) { A2[$n] = load_A((k * p.E + gj * RE) * p.N + s * NR + $nu, p.N) * LOG2E; }
  //@end
  var dv = VE(0.0);
  if (live) { dv = Dv[k * p.EV + gj]; }
  var cdl = VE(0.0);  // Σ Δ from the chunk start to t (inclusive)
  var cpos = 0u;      // steps of the current chunk done
  var cidx = 0u;      // the current chunk
  var ddp = VE(0.0);  // Σ g·u over the steps this thread reduces (of channel group j)

  var pb: array<f32, PB>;
  var pc: array<f32, PB>;
  var pu: array<VE, PC>;
  var pd: array<VE, PC>;
  var pg: array<VE, PC>;
  var pzf: array<VE, PC>;
  let ntiles = (p.T + TT - 1u) / TT;
  // Iteration it stages tile it-1 (loaded during iteration it-1), loads tile it, then computes tile it-1.
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
        if (HAS_Z) { sDZF[soc + lid + $mu * WG] = pzf[$m]; }
      }
      //@end
    }
    workgroupBarrier();
    let tl = it * TT;
    //@use selective_scan_parts.wgsl load_bc
    //@repeat {{PC}}
    {
      let i = lid + $mu * WG;
      let t = tl + i / WC;
      let g2 = wid.x * WC + i % WC;
      pu[$m] = VE(0.0);
      pd[$m] = VE(0.0);
      pg[$m] = VE(0.0);
      pzf[$m] = VE(0.0);
      if (i < TT * WC && t < p.T && g2 < p.EV) {
        let o = (rowT + t) * p.EV + g2;
        pu[$m] = U[o];
        pd[$m] = DLT[o];
        let dout = DOUT[o];
        pg[$m] = dout;
        if (HAS_Z) {
          let z = Z[o];
          let sg = sigmoid_(z);
          pg[$m] = dout * z * sg;
          pzf[$m] = dout * sg * (1.0 + z * (1.0 - sg));
        }
      }
    }
    //@end
    if (it > 0u) {
      let t0 = tl - TT;
      let ob = ((it - 1u) % 2u) * TT * NP4;
      let oc = ((it - 1u) % 2u) * TT * WC;
      for (var tt = 0u; tt < TT; tt++) {
        let t = t0 + tt;
        let dl = sDl[oc + tt * WC + j];
        let du = dl * sU[oc + tt * WC + j];
        let g = sG[oc + tt * WC + j];
        cdl += dl;
        let cg = cdl * g;
        let base = ob + tt * NP4 + s * NR4;
        //@unroll_q
        let b$q = sB[base + $qu];
        let c$q = sC[base + $qu];
        var dc$q = vec4<f32>(0.0);
        //@end
        var y = VE(0.0);
        var f = VE(0.0);
        // The A-terms take the decayed previous state a_t·h_{t-1} (= h_t - x_t), not h_t: see the identity in
        // lib/ops/selective_scan.ts (with h_t, fast-decaying states cancelled most of their digits).
        //@unroll_n
        let hp$n = exp2(dl * A2[$n]) * h[$n];
        h[$n] = fma(du, VE(b$q.$c), hp$n);
        let chp$n = hp$n * c$q.$c;
        if (HAS_Z) { y = fma(h[$n], VE(c$q.$c), y); }
        f = fma(A2[$n], chp$n, f);
        let k1$n = kahan(dA[$n], dAc[$n], cg * chp$n); dA[$n] = k1$n.s; dAc[$n] = k1$n.c;
        dc$q.$c = hdot(g, h[$n]);
        //@end
        //@unroll_q
        sDC[j * PSTR + tt * NP4 + s * NR4 + $qu] = dc$q;
        //@end
        sF[(s * TT + tt) * WC + j] = f;
        if (HAS_Z) { sY[(s * TT + tt) * WC + j] = y; }
        // The end of a chunk: keep h (if a chunk follows, for the reverse sweep's boundary terms) and Σ Δ.
        cpos += 1u;
        if (t < p.T && (cpos == p.L || t + 1u == p.T)) {
          let c = cidx;
          cidx += 1u;
          cpos = 0u;
          if (live) {
            if (t + 1u < p.T) {
              //@unroll_n
              if (s * NR + $nu < p.N) { store_HS(((row * p.E + gj * RE) * p.NC + c) * p.N + s * NR + $nu, p.NC * p.N, h[$n]); }
              //@end
            }
            if (s == 0u) { CTOT[(row * p.NC + c) * p.EV + gj] = cdl; }
          }
          cdl = VE(0.0);
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
          var f = VE(0.0);
          for (var q = 0u; q < SN; q++) { f += sF[(q * TT + tt) * WC + j]; }
          let o = (rowT + t) * p.EV + gj;
          GF[o] = sG[oc + i] * f * LN2;
          ddp = fma(sG[oc + i], sU[oc + i], ddp);
          if (HAS_Z) {
            var y = dv * sU[oc + i];
            for (var q = 0u; q < SN; q++) { y += sY[(q * TT + tt) * WC + j]; }
            DZ[o] = sDZF[oc + i] * y;
          }
        }
      }
      //@end
      // Per (t, 4 states): sum dC over the workgroup's channel groups in a fixed order.
      //@use selective_scan_parts.wgsl lane_sum SRC=sDC DST=DCP
    }
    // No barrier here: see selective_scan_fwd.wgsl.
  }

  if (live) {
    //@unroll_n
    if (s * NR + $nu < p.N) { store_DA((row * p.E + gj * RE) * p.N + s * NR + $nu, p.N, dA[$n] - dAc[$n]); }
    //@end
  }
  // dD: the partial sums of the SN threads of channel group j, in a fixed order.
  workgroupBarrier();  // the last reduce may still read sF
  sF[lid] = ddp;
  workgroupBarrier();
  if (s == 0u && live) {
    var d = VE(0.0);
    for (var q = 0u; q < SN; q++) { d += sF[q * WC + j]; }
    DDP[row * p.EV + gj] = d;
  }
}
