// Chunked SSD scan, state passing: one workgroup per (row, head, tile of the P×N state) walks the chunks in order,
// the state tile in registers, and stores it at every chunk boundary. Per chunk c it is a plain product over the
// chunk's Q steps (no per-step decay in the inner loop), after one scaling by the chunk's whole decay:
//   forward (REVERSE false):  Hout_c = exp(Σ_c a)·Hout_{c−1} + Σ_s (dt_s·bdec_s·x_s) B_sᵀ ,  OUT[c] = Hout_c
//   reverse (REVERSE true):   Γ_{c−1} = exp(Σ_c a)·Γ_c + Σ_t (fdec_t·dy_t) C_tᵀ ,          OUT[c−1] = Γ_{c−1}
// (Hout_c: the state at the end of chunk c; Γ_c = ∂L/∂Hout_c; c = 0 .. nC − 2 are stored, the last is not needed.)
// The reverse pass also writes, per chunk c (1 ≤ c ≤ nC − 2) and state tile, this tile's part of the chunk-end
// term exp(Σ_c a)·<Γ_c, Hout_{c−1}> of d(dt·A) (lib/ops/ssd_chunked.ts), summed over the tile in a fixed order.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> U: array<f32>; // x (forward) or dy (reverse): (K, Bt, T, H, P)
@group(0) @binding(2) var<storage, read> V: array<f32>; // B (forward) or C (reverse): (K, Bt, T, G, N)
@group(0) @binding(3) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(4) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(5) var<storage, read> TAB: array<f32>; // (rows, H, nC, TABW, TABW)
@group(0) @binding(6) var<storage, read_write> OUT: array<f32>; // HS or GS: (rows, H, nC − 1, P, N)
@group(0) @binding(7) var<storage, read> HS: array<f32>; // reverse: the forward's states
@group(0) @binding(8) var<storage, read_write> ET: array<f32>; // reverse: (rows, H, nC, NTILES)

const REVERSE: bool = {{REVERSE}};
const NNT: u32 = {{NNT}}u; // state tiles along n
const NTILES: u32 = {{NTILES}}u; // state tiles

var<workgroup> red: array<f32, WGP>;

fn store_state(ob: u32, p: u32, n: u32, v: vec4<f32>) {
  if (p >= P) { return; }
  for (var i = 0u; i < 4u; i++) {
    if (n + i < N) { OUT[ob + p * N + n + i] = v[i]; }
  }
}

fn dot_state(hb: u32, p: u32, n: u32, v: vec4<f32>) -> f32 {
  if (p >= P) { return 0.0; }
  var s = 0.0;
  for (var i = 0u; i < 4u; i++) {
    if (n + i < N) { s += v[i] * HS[hb + p * N + n + i]; }
  }
  return s;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·H·NTILES
  let tile = w % NTILES;
  let kh = w / NTILES; // local row · H + head
  let h = kh % prm.H;
  let kb = prm.kb0 + kh / prm.H;
  let g = h / prm.HG;
  let p0 = (tile / NNT) * MT;
  let n0 = (tile % NNT) * NT;
  let ty = lid / TX;
  let tx = lid % TX;
  let Tp = prm.nC * Q;
  let nS = prm.nC - 1u;
  {{DECL}}
  for (var it = 0u; it < nS; it++) {
    var c = it;
    if (REVERSE) { c = prm.nC - 1u - it; }
    let cdec = exp(TAB[(kh * prm.nC + c) * TABW * TABW + NB + 1u]);
    {{SCALE}}
    for (var k0 = 0u; k0 < Q; k0 += BK) {
      // As[k][m] = weight_t · U_t[p0 + m], Bs[k][n] = V_t[n0 + n] for the steps t = cQ + k0 + k
      for (var i = lid; i < BK * MT; i += WG) {
        let kk = i / MT;
        let m = i % MT;
        let t = c * Q + k0 + kk;
        var v = 0.0;
        if (t < prm.T && p0 + m < P) {
          let d = DEC[kh * Tp + t];
          var wt = d.z;
          if (!REVERSE) { wt = DT[(kb * prm.T + t) * prm.H + h] * d.w; }
          v = U[((kb * prm.T + t) * prm.H + h) * P + p0 + m] * wt;
        }
        As[kk * AS4 + m / 4u][m % 4u] = v;
      }
      for (var i = lid; i < BK * NT; i += WG) {
        let kk = i / NT;
        let m = i % NT;
        let t = c * Q + k0 + kk;
        var v = 0.0;
        if (t < prm.T && n0 + m < N) { v = V[((kb * prm.T + t) * prm.G + g) * N + n0 + m]; }
        Bs[kk * BS4 + m / 4u][m % 4u] = v;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP}}
      }
      workgroupBarrier();
    }
    var j = c;
    if (REVERSE) { j = c - 1u; }
    let ob = (kh * nS + j) * P * N;
    {{STORE}}
    if (REVERSE && c >= 2u) {
      // the chunk-end term of chunk c − 1: exp(Σ_{c−1} a)·<Γ_{c−1}, Hout_{c−2}>, this tile's part
      let hb = (kh * nS + c - 2u) * P * N;
      var part = 0.0;
      {{DOT_HS}}
      red[lid] = part;
      //@use ssd_chunk_parts.wgsl tree_sum
      if (lid == 0u) {
        let e = exp(TAB[(kh * prm.nC + c - 1u) * TABW * TABW + NB + 1u]);
        ET[(kh * prm.nC + c - 1u) * NTILES + tile] = e * red[0];
      }
      workgroupBarrier();
    }
  }
}
