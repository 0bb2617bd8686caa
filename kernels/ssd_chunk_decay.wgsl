// Chunked SSD scan, backward: d(dt·A) of every step, then d dt, and the (row, head) parts of dA and dD. One
// workgroup per (row, head) walks the chunks; within a chunk thread i owns the SEG steps i·SEG .. and
//   d a_s = Σ_{t ≥ s} (z_t + v_t) + Σ_{t < s} u_t + et_c        (t over the chunk; lib/ops/ssd_chunked.ts)
// with z_t = Σ_{bs ≤ b(t)} ZR[t][bs] − Σ_{bt ≥ b(t)} ZC[t][bt], v and u summed over the N tiles (v only after the
// first chunk, u only before the last), et_c the chunk-end term summed over the state tiles. The suffix and prefix
// sums go in two levels (per thread, then over the threads' totals), in a fixed order. Then
//   d dt_s = q_s + A·d a_s ,   dA = Σ_s dt_s·d a_s ,   dD = Σ dy·x (DDP parts) ,   SP[kb, h] = (dA, dD) parts.

//@use ssd_chunk_parts.wgsl params

@group(0) @binding(1) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(2) var<storage, read> Av: array<f32>; // (K, H)
@group(0) @binding(3) var<storage, read> ZR: array<f32>; // (rows, H, nC·Q, NB)
@group(0) @binding(4) var<storage, read> ZC: array<f32>; // (rows, H, nC·Q, NB)
@group(0) @binding(5) var<storage, read> VV: array<f32>; // (rows, H, nC·Q, NNT)
@group(0) @binding(6) var<storage, read> UU: array<f32>; // (rows, H, nC·Q, NNT)
@group(0) @binding(7) var<storage, read> QS: array<f32>; // (rows, H, nC·Q, NPT)
@group(0) @binding(8) var<storage, read> ET: array<f32>; // (rows, H, nC, NST)
@group(0) @binding(9) var<storage, read> DDP: array<f32>; // (rows, H, nC, NB, NPT)
@group(0) @binding(10) var<storage, read_write> DDT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(11) var<storage, read_write> SP: array<f32>; // (K, Bt, H, 2)

const NNT: u32 = {{NNT}}u;
const NPT: u32 = {{NPT}}u;
const NST: u32 = {{NST}}u;
const WG: u32 = {{WGD}}u;
const WGP: u32 = {{WGD}}u; // a power of two
const SEG: u32 = {{SEG}}u; // steps per thread: ceil(Q / WG)

var<workgroup> segz: array<f32, WG>;
var<workgroup> segu: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size({{WGD}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·H
  let kh = w;
  let h = kh % prm.H;
  let kb = prm.kb0 + kh / prm.H;
  let a = Av[(kb / prm.Bt) * prm.H + h];
  let Tp = prm.nC * Q;
  var dA = 0.0;
  for (var c = 0u; c < prm.nC; c++) {
    var et = 0.0;
    if (c >= 1u && c + 2u <= prm.nC) {
      for (var i = 0u; i < NST; i++) { et += ET[(kh * prm.nC + c) * NST + i]; }
    }
    var zv: array<f32, SEG>;
    var uu: array<f32, SEG>;
    var tz = 0.0;
    var tu = 0.0;
    for (var i = 0u; i < SEG; i++) {
      let tl = lid * SEG + i;
      var z = 0.0;
      var u = 0.0;
      if (tl < Q) {
        let r = (kh * Tp + c * Q + tl) * NB;
        let b = tl / QB;
        for (var j = 0u; j <= b; j++) { z += ZR[r + j]; }
        for (var j = b; j < NB; j++) { z -= ZC[r + j]; }
        let rn = (kh * Tp + c * Q + tl) * NNT;
        if (c >= 1u) {
          for (var j = 0u; j < NNT; j++) { z += VV[rn + j]; }
        }
        if (c + 1u < prm.nC) {
          for (var j = 0u; j < NNT; j++) { u += UU[rn + j]; }
        }
      }
      zv[i] = z;
      uu[i] = u;
      tz += z;
      tu += u;
    }
    segz[lid] = tz;
    segu[lid] = tu;
    workgroupBarrier();
    var suf = 0.0; // Σ z + v over the later threads' steps
    for (var j = WG - 1u; j > lid; j--) { suf += segz[j]; }
    var pre = 0.0; // Σ u over the earlier threads' steps
    for (var j = 0u; j < lid; j++) { pre += segu[j]; }
    workgroupBarrier();
    var pres: array<f32, SEG>;
    for (var i = 0u; i < SEG; i++) {
      pres[i] = pre;
      pre += uu[i];
    }
    for (var i = SEG; i > 0u; i--) {
      suf += zv[i - 1u];
      let t = c * Q + lid * SEG + i - 1u;
      if (lid * SEG + i - 1u < Q && t < prm.T) {
        let da = suf + pres[i - 1u] + et;
        var q = 0.0;
        for (var j = 0u; j < NPT; j++) { q += QS[(kh * Tp + t) * NPT + j]; }
        let idx = (kb * prm.T + t) * prm.H + h;
        DDT[idx] = q + a * da;
        dA += DT[idx] * da;
      }
    }
  }
  var dD = 0.0;
  let nd = prm.nC * NB * NPT;
  for (var i = lid; i < nd; i += WG) { dD += DDP[kh * nd + i]; }
  red[lid] = dA;
  //@use ssd_chunk_parts.wgsl tree_sum
  if (lid == 0u) { SP[(kb * prm.H + h) * 2u] = red[0]; }
  workgroupBarrier();
  red[lid] = dD;
  //@use ssd_chunk_parts.wgsl tree_sum
  if (lid == 0u) { SP[(kb * prm.H + h) * 2u + 1u] = red[0]; }
}
