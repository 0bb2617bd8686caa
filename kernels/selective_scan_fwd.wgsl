// Selective scan (Mamba 1), forward: y = (Σ_n C_t·h_t + D·u_t) ⊙ silu(z_t), h_t = exp(Δ_t·A)·h_{t-1} + Δ_t·B_t·u_t.
// The design and the layout are explained in lib/ops/selective_scan.ts; in short:
// - a workgroup owns one row (k, b) and WC·RE consecutive channels; thread (j, s) owns channels
//   (group·WC + j)·RE .. +RE-1 (one VE vector) and the NR states s·NR .. s·NR+NR-1 of each, in registers;
// - it walks T sequentially in tiles of TT steps: B_t, C_t of the tile (shared by every channel) and u, Δ of
//   the workgroup's channels are staged in workgroup memory, each thread advances its RE·NR states, and the SN
//   state slices' partial y are summed in a fixed order (so results are bit-identical run to run).
// - the loads of tile i+1 are issued into registers before tile i is computed (their latency hides behind it),
//   and the reduce phase reads only workgroup memory, so no phase waits on global memory; the staging buffers
//   alternate between tiles, so each tile needs two barriers.
// Repeat markers (`//@unroll_n`, `//@unroll_q`, `//@repeat COUNT` ... `//@end`) are expanded by the host; see
// `unroll` in lib/ops/selective_scan.ts. Constant indices keep the per-thread arrays in registers.
// Placeholders: VE (f32 | vec2<f32> | vec4<f32>), RE, NR, SN, WC, TT, HAS_Z, ZN, PB, PC, STRIDED (made by the host).

//@use selective_scan_parts.wgsl constants
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

var<workgroup> sB: array<vec4<f32>, 2u * TT * NP4>;   // [tt][n / 4]
var<workgroup> sC: array<vec4<f32>, 2u * TT * NP4>;
var<workgroup> sU: array<VE, 2u * TT * WC>;           // [tt][j]
var<workgroup> sDl: array<VE, 2u * TT * WC>;
var<workgroup> sY: array<VE, TT * WC * SN>;      // [s][tt][j]: partial y of slice s
var<workgroup> sSZ: array<VE, 2u * {{ZN}}>;            // [tt][j]: silu(z) (TT·WC with z, else 1)

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
  var dv = VE(0.0);
  if (live) { dv = Dv[k * p.EV + gj]; }

  // Registers holding the next tile: B, C (pb, pc) and u, Δ, silu(z) of channel groups (pu, pd, pz).
  var pb: array<f32, PB>;
  var pc: array<f32, PB>;
  var pu: array<VE, PC>;
  var pd: array<VE, PC>;
  var pz: array<VE, PC>;
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
        if (HAS_Z) { sSZ[soc + lid + $mu * WG] = pz[$m]; }
      }
      //@end
    }
    workgroupBarrier();
    // Load tile it (steps past T, and past the last tile, as zeros).
    let tl = it * TT;
    //@use selective_scan_parts.wgsl load_bc
    //@repeat {{PC}}
    {
      let i = lid + $mu * WG;
      let t = tl + i / WC;
      let g2 = wid.x * WC + i % WC;
      pu[$m] = VE(0.0);
      pd[$m] = VE(0.0);
      pz[$m] = VE(0.0);
      if (i < TT * WC && t < p.T && g2 < p.EV) {
        let o = (rowT + t) * p.EV + g2;
        pu[$m] = U[o];
        pd[$m] = DLT[o];
        if (HAS_Z) {
          let z = Z[o];
          pz[$m] = z / (1.0 + exp(-z));
        }
      }
    }
    //@end
    if (it > 0u) {
      let t0 = tl - TT;
      let ob = ((it - 1u) % 2u) * TT * NP4;
      let oc = ((it - 1u) % 2u) * TT * WC;
      // Steps past T were staged as Δ = u = 0: exp(0) = 1 and no input, so the states are unchanged.
      for (var tt = 0u; tt < TT; tt++) {
        let dl = sDl[oc + tt * WC + j];
        let du = dl * sU[oc + tt * WC + j];
        let base = ob + tt * NP4 + s * NR4;
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
      // y = D·u + Σ_s partial_s (fixed order), gated by silu(z). Thread (j, s) reduces channel group j.
      //@repeat {{PC}}
      {
        let i = lid + $mu * WG;
        let t = t0 + i / WC;
        if (i < TT * WC && t < p.T && live) {
          var y = dv * sU[oc + i];
          for (var q = 0u; q < SN; q++) { y += sY[(q * TT + i / WC) * WC + j]; }
          if (HAS_Z) { y *= sSZ[oc + i]; }
          Y[(rowT + t) * p.EV + gj] = y;
        }
      }
      //@end
    }
    // No barrier here: the next tile is staged into the other buffers, and the next writes of sY come after the
    // next iteration's barrier, which every thread reaches only after this reduce.
  }
}
