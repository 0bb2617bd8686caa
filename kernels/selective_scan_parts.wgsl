// Parts shared by the Mamba 1 scan kernels (selective_scan_*.wgsl), spliced in by `//@use` lines (see
// `kernelSource` in lib/core/kernels.ts): the constants of the layout, the staging and loading of B and C, and the sum
// of a per-lane dB or dC over the workgroup's channel groups. Not a kernel on its own.

//@part constants
alias VE = {{VE}};
const RE: u32 = {{RE}}u;    // channels per thread (the width of VE)
const NR: u32 = {{NR}}u;    // states per thread (a multiple of 4)
const NR4: u32 = NR / 4u;
const SN: u32 = {{SN}}u;    // state slices: threads sharing one channel group
const NP4: u32 = NR4 * SN;  // padded N / 4
const WC: u32 = {{WC}}u;    // channel groups (threads per slice) per workgroup
const WG: u32 = WC * SN;    // workgroup size
const TT: u32 = {{TT}}u;    // time steps per tile
const NP: u32 = NP4 * 4u;
const PB: u32 = {{PB}}u;    // ceil(TT·NP / WG): B, C values each thread prefetches per tile
const PC: u32 = {{PC}}u;    // ceil(TT·WC / WG): channel groups each thread prefetches per tile
const HAS_Z: bool = {{HAS_Z}};
//@endpart

//@part stage_bc
      //@repeat {{PB}}
      if (lid + $mu * WG < TT * NP) {
        let i = lid + $mu * WG;
        sB[sob + i / 4u][i % 4u] = pb[$m];
        sC[sob + i / 4u][i % 4u] = pc[$m];
      }
      //@end
//@endpart

//@part load_bc
    //@repeat {{PB}}
    {
      let i = lid + $mu * WG;
      let t = tl + i / NP;
      let n = i % NP;
      pb[$m] = 0.0;
      pc[$m] = 0.0;
      if (i < TT * NP && t < p.T && n < p.N) {
        let o = (rowT + t) * p.N + n;
        pb[$m] = Bm[o];
        pc[$m] = Cm[o];
      }
    }
    //@end
//@endpart

//@part lane_sum SRC DST: per (t, 4 states), {{DST}} = {{SRC}} summed over the WC lanes in a fixed order
      for (var i = lid; i < TT * NP4; i += WG) {
        let t = t0 + i / NP4;
        if (t < p.T) {
          // four independent partial sums (latency), combined in a fixed order
          var v0 = vec4<f32>(0.0);
          var v1 = v0;
          var v2 = v0;
          var v3 = v0;
          for (var jj = 0u; jj + 3u < WC; jj += 4u) {
            v0 += {{SRC}}[jj * PSTR + i];
            v1 += {{SRC}}[(jj + 1u) * PSTR + i];
            v2 += {{SRC}}[(jj + 2u) * PSTR + i];
            v3 += {{SRC}}[(jj + 3u) * PSTR + i];
          }
          for (var jj = WC & ~3u; jj < WC; jj++) { v0 += {{SRC}}[jj * PSTR + i]; }
          let v = (v0 + v1) + (v2 + v3);
          let n0 = (i % NP4) * 4u;
          let o = ((wid.x * p.KB + row) * p.T + t) * p.N + n0;
          if (n0 < p.N) { {{DST}}[o] = v.x; }
          if (n0 + 1u < p.N) { {{DST}}[o + 1u] = v.y; }
          if (n0 + 2u < p.N) { {{DST}}[o + 2u] = v.z; }
          if (n0 + 3u < p.N) { {{DST}}[o + 3u] = v.w; }
        }
      }
//@endpart
