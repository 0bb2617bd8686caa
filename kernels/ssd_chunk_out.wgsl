// Chunked SSD scan, the per-block outputs: one workgroup per (row, head, chunk c, block, tile of P columns) computes a
// QB × PT block as one product over [the causal blocks of the chunk | the N states]:
//   forward (BWD false), rows t of block bt:
//     y_t = Σ_{bs ≤ bt} Σ_{s ≤ t} CB[t, s]·exp(seg(s, t))·dt_s·x_s  +  fdec_t·(Hout_{c−1} C_t)  +  D·x_t
//   backward (BWD true), rows s of block bs:
//     dX̃_s = Σ_{bt ≥ bs} Σ_{t ≥ s} CB[t, s]·exp(seg(s, t))·dy_t  +  bdec_s·(Γ_c B_s)
//     dx_s = dt_s·dX̃_s + D·dy_s ; QS: <dX̃_s, x_s> (the direct part of d dt_s), per P tile ; DDP: Σ dy·x
// where seg(s, t) = Σ a over the steps s+1 .. t: loc_t − loc_s in one block, rem_s + TAB[bs+1][bt+1] + loc_t across
// blocks. The state term is skipped in the first chunk (forward) and the last (backward).

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> CB: array<f32>; // (rows, G, nC, NP, QB, QB)
@group(0) @binding(2) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(3) var<storage, read> TAB: array<f32>; // (rows, H, nC, TABW, TABW)
@group(0) @binding(4) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(5) var<storage, read> U: array<f32>; // x (forward) or dy (backward): (K, Bt, T, H, P)
@group(0) @binding(6) var<storage, read> V: array<f32>; // C (forward) or B (backward): (K, Bt, T, G, N)
@group(0) @binding(7) var<storage, read> S: array<f32>; // HS (forward) or GS (backward): (rows, H, nC − 1, P, N)
@group(0) @binding(8) var<storage, read> Dv: array<f32>; // (K, H)
@group(0) @binding(9) var<storage, read_write> OUT: array<f32>; // y or dx: (K, Bt, T, H, P)
@group(0) @binding(10) var<storage, read> X: array<f32>; // backward: x
@group(0) @binding(11) var<storage, read_write> QS: array<f32>; // backward: (rows, H, nC·Q, NPT)
@group(0) @binding(12) var<storage, read_write> DDP: array<f32>; // backward: one partial of Σ dy·x per workgroup

const BWD: bool = {{BWD}};
const NPT: u32 = {{NPT}}u; // tiles along P

var<workgroup> red: array<f32, {{RED_LEN}}>; // max(TX·QB, WGP)

fn out_fwd(kb: u32, h: u32, t0: u32, p0: u32, dskip: f32, row: u32, col4: u32, v: vec4<f32>) {
  let t = t0 + row;
  if (row >= QB || t >= prm.T) { return; }
  for (var i = 0u; i < 4u; i++) {
    let p = p0 + 4u * col4 + i;
    if (p < P) {
      let idx = ((kb * prm.T + t) * prm.H + h) * P + p;
      OUT[idx] = v[i] + dskip * U[idx];
    }
  }
}

// Writes dx of one cell; returns its parts of <dX̃_t, x_t> and of Σ dy·x.
fn out_bwd(kb: u32, h: u32, t0: u32, p0: u32, dskip: f32, row: u32, col4: u32, v: vec4<f32>) -> vec2<f32> {
  let t = t0 + row;
  var r = vec2<f32>(0.0);
  if (row >= QB || t >= prm.T) { return r; }
  let dtv = DT[(kb * prm.T + t) * prm.H + h];
  for (var i = 0u; i < 4u; i++) {
    let p = p0 + 4u * col4 + i;
    if (p < P) {
      let idx = ((kb * prm.T + t) * prm.H + h) * P + p;
      let e = U[idx];
      let xv = X[idx];
      OUT[idx] = dtv * v[i] + dskip * e;
      r += vec2<f32>(v[i] * xv, e * xv);
    }
  }
  return r;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·H·nC·NB·NPT
  let ptile = w % NPT;
  let blk = (w / NPT) % NB;
  let c = (w / (NPT * NB)) % prm.nC;
  let kh = w / (NPT * NB * prm.nC); // local row · H + head
  let h = kh % prm.H;
  let kbl = kh / prm.H;
  let kb = prm.kb0 + kbl;
  let g = h / prm.HG;
  let kg = kbl * prm.G + g;
  let p0 = ptile * NT;
  let t0 = c * Q + blk * QB; // this block's first step
  let Tp = prm.nC * Q;
  let tb = (kh * prm.nC + c) * TABW * TABW;
  let ty = lid / TX;
  let tx = lid % TX;
  {{DECL}}
  // the chunk's causal blocks: forward bs = 0 .. blk, backward bt = blk .. NB − 1
  var npairs = blk + 1u;
  if (BWD) { npairs = NB - blk; }
  for (var jj = 0u; jj < npairs; jj++) {
    var bt = blk;
    var bs = jj;
    if (BWD) {
      bt = blk + jj;
      bs = blk;
    }
    let other = select(bs, bt, BWD); // the block that the inner dimension runs over
    let cbb = ((kg * prm.nC + c) * NP + bt * (bt + 1u) / 2u + bs) * QB * QB;
    let cross = bs < bt;
    var btw = 0.0;
    if (cross) { btw = TAB[tb + (bs + 1u) * TABW + bt + 1u]; }
    for (var k0 = 0u; k0 < QB; k0 += BK) {
      // As[k][m]: forward CB[t = m][s = k0 + k]·exp(seg)·dt_s, backward CB[t = k0 + k][s = m]·exp(seg); both
      // staged along s, CB's contiguous axis
      for (var i = lid; i < BK * MT; i += WG) {
        var kk = i % BK;
        var m = i / BK;
        if (BWD) {
          kk = i / MT;
          m = i % MT;
        }
        var tl = m;
        var sl = k0 + kk;
        if (BWD) {
          tl = k0 + kk;
          sl = m;
        }
        let tg = c * Q + bt * QB + tl;
        let sg = c * Q + bs * QB + sl;
        var v = 0.0;
        if (m < QB && tg < prm.T && (cross || sl <= tl)) {
          let dt_ = DEC[kh * Tp + tg];
          let ds_ = DEC[kh * Tp + sg];
          var e = dt_.x - ds_.x;
          if (cross) { e = ds_.y + btw + dt_.x; }
          v = CB[cbb + tl * QB + sl] * exp(e);
          if (!BWD) { v *= DT[(kb * prm.T + sg) * prm.H + h]; }
        }
        As[kk * AS4 + m / 4u][m % 4u] = v;
      }
      // Bs[k][n] = U at step (cQ + other·QB + k0 + k), column p0 + n
      for (var i = lid; i < BK * NT; i += WG) {
        let kk = i / NT;
        let m = i % NT;
        let t = c * Q + other * QB + k0 + kk;
        var v = 0.0;
        if (t < prm.T && p0 + m < P) { v = U[((kb * prm.T + t) * prm.H + h) * P + p0 + m]; }
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
  }
  // the state term: forward fdec_t·C_t against Hout_{c−1}, backward bdec_s·B_s against Γ_c
  var hasState = c >= 1u;
  if (BWD) { hasState = c + 1u < prm.nC; }
  if (hasState) {
    var j = c;
    if (!BWD) { j = c - 1u; }
    let sb = (kh * (prm.nC - 1u) + j) * P * N;
    for (var k0 = 0u; k0 < N; k0 += BK) {
      for (var i = lid; i < BK * MT; i += WG) {
        let kk = i % BK;
        let m = i / BK;
        let t = t0 + m;
        var v = 0.0;
        if (m < QB && t < prm.T && k0 + kk < N) {
          let d = DEC[kh * Tp + t];
          v = select(d.z, d.w, BWD) * V[((kb * prm.T + t) * prm.G + g) * N + k0 + kk];
        }
        As[kk * AS4 + m / 4u][m % 4u] = v;
      }
      // Bs[k][n] = S[p0 + n][k0 + k] (the state transposed), read along its contiguous axis
      for (var i = lid; i < BK * NT; i += WG) {
        let kk = i % BK;
        let m = i / BK;
        var v = 0.0;
        if (k0 + kk < N && p0 + m < P) { v = S[sb + (p0 + m) * N + k0 + kk]; }
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
  }
  var ddp = 0.0; // backward: this thread's part of Σ dy·x
  let dskip = Dv[(kb / prm.Bt) * prm.H + h];
  {{EPILOGUE}}
  if (BWD) {
    // <dX̃_t, x_t> summed over the TX column threads, then Σ dy·x over the workgroup, both in a fixed order
    workgroupBarrier();
    for (var i = lid; i < QB; i += WG) {
      var q = 0.0;
      for (var x = 0u; x < TX; x++) { q += red[x * QB + i]; }
      QS[(kh * Tp + t0 + i) * NPT + ptile] = q;
    }
    workgroupBarrier();
    red[lid] = ddp;
    //@use ssd_chunk_parts.wgsl tree_sum
    if (lid == 0u) { DDP[w] = red[0]; }
  }
}
