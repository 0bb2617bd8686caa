// Chunked SSD scan, backward: dC (DB false) or dB (DB true) of one block, one workgroup per (row, group, chunk c,
// block, tile of N columns); the sum over the heads of the group runs inside, in order, so no per-head scratch:
//   dC_t = Σ_h fdec_t·(dy_tᵀ Hout_{c−1})  +  Σ_{bs ≤ bt} Σ_{s ≤ t} WS[t, s]·B_s        (rows t of block bt)
//   dB_s = Σ_h bdec_s·dt_s·(x_sᵀ Γ_c)    +  Σ_{bt ≥ bs} Σ_{t ≥ s} WS[t, s]·C_t        (rows s of block bs)
// Each head's state part is also dotted with C_t (B_s): v_t = fdec_t·<dy_t, Hout_{c−1} C_t> and
// u_s = bdec_s·dt_s·<x_s, Γ_c B_s>, the state parts of d(dt·A), written per N tile to VU.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> U: array<f32>; // dy (dC) or x (dB): (K, Bt, T, H, P)
@group(0) @binding(2) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(3) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(4) var<storage, read> S: array<f32>; // HS (dC) or GS (dB): (rows, H, nC − 1, P, N)
@group(0) @binding(5) var<storage, read> WS: array<f32>; // (rows, G, nC, NP, QB, QB)
@group(0) @binding(6) var<storage, read> R: array<f32>; // B (dC) or C (dB): the right operand of the WS part
@group(0) @binding(7) var<storage, read> E: array<f32>; // C (dC) or B (dB): dotted with each head's state part
@group(0) @binding(8) var<storage, read_write> OUT: array<f32>; // dC or dB: (K, Bt, T, G, N)
@group(0) @binding(9) var<storage, read_write> VU: array<f32>; // v (dC) or u (dB): (rows, H, nC·Q, NNT)

const DB: bool = {{DB}};
const NNT: u32 = {{NNT}}u; // tiles along N

var<workgroup> red: array<f32, {{RED_LEN}}>; // (TX, QB)

// One cell's part of <E_t, head part>.
fn edot(kb: u32, g: u32, t0: u32, n0: u32, row: u32, col4: u32, v: vec4<f32>) -> f32 {
  let t = t0 + row;
  if (row >= QB || t >= prm.T) { return 0.0; }
  var s = 0.0;
  for (var i = 0u; i < 4u; i++) {
    let n = n0 + 4u * col4 + i;
    if (n < N) { s += v[i] * E[((kb * prm.T + t) * prm.G + g) * N + n]; }
  }
  return s;
}

fn store_out(kb: u32, g: u32, t0: u32, n0: u32, row: u32, col4: u32, v: vec4<f32>) {
  let t = t0 + row;
  if (row >= QB || t >= prm.T) { return; }
  for (var i = 0u; i < 4u; i++) {
    let n = n0 + 4u * col4 + i;
    if (n < N) { OUT[((kb * prm.T + t) * prm.G + g) * N + n] = v[i]; }
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·G·nC·NB·NNT
  let ntile = w % NNT;
  let blk = (w / NNT) % NB;
  let c = (w / (NNT * NB)) % prm.nC;
  let kg = w / (NNT * NB * prm.nC); // local row · G + group
  let g = kg % prm.G;
  let kbl = kg / prm.G;
  let kb = prm.kb0 + kbl;
  let n0 = ntile * NT;
  let t0 = c * Q + blk * QB;
  let Tp = prm.nC * Q;
  let ty = lid / TX;
  let tx = lid % TX;
  {{DECL_O}}
  {{DECL_E}}
  var hasState = c >= 1u;
  if (DB) { hasState = c + 1u < prm.nC; }
  if (hasState) {
    var js = c;
    if (!DB) { js = c - 1u; }
    for (var j = 0u; j < prm.HG; j++) {
      let h = g * prm.HG + j;
      let kh = kbl * prm.H + h;
      let sb = (kh * (prm.nC - 1u) + js) * P * N;
      {{ZERO_E}}
      for (var k0 = 0u; k0 < P; k0 += BK) {
        // As[k][m] = weight_t·U_t[k0 + k] (read along p), Bs[k][n] = S[k0 + k][n0 + n] (read along n)
        for (var i = lid; i < BK * MT; i += WG) {
          let kk = i % BK;
          let m = i / BK;
          let t = t0 + m;
          var v = 0.0;
          if (m < QB && t < prm.T && k0 + kk < P) {
            let d = DEC[kh * Tp + t];
            var wt = d.z;
            if (DB) { wt = d.w * DT[(kb * prm.T + t) * prm.H + h]; }
            v = wt * U[((kb * prm.T + t) * prm.H + h) * P + k0 + kk];
          }
          As[kk * AS4 + m / 4u][m % 4u] = v;
        }
        for (var i = lid; i < BK * NT; i += WG) {
          let kk = i / NT;
          let m = i % NT;
          var v = 0.0;
          if (k0 + kk < P && n0 + m < N) { v = S[sb + (k0 + kk) * N + n0 + m]; }
          Bs[kk * BS4 + m / 4u][m % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
          let ai = kk * AS4 + ty;
          let bi = kk * BS4 + tx;
          {{KSTEP_E}}
        }
        workgroupBarrier();
      }
      {{VDOT}}
      workgroupBarrier();
      for (var i = lid; i < QB; i += WG) {
        var a = 0.0;
        for (var x = 0u; x < TX; x++) { a += red[x * QB + i]; }
        VU[(kh * Tp + t0 + i) * NNT + ntile] = a;
      }
      workgroupBarrier();
      {{ADD_E}}
    }
  }
  // the block pairs of the chunk: dC bs = 0 .. blk, dB bt = blk .. NB − 1
  var npairs = blk + 1u;
  if (DB) { npairs = NB - blk; }
  for (var jj = 0u; jj < npairs; jj++) {
    var bt = blk;
    var bs = jj;
    if (DB) {
      bt = blk + jj;
      bs = blk;
    }
    let other = select(bs, bt, DB);
    let wsb = ((kg * prm.nC + c) * NP + bt * (bt + 1u) / 2u + bs) * QB * QB;
    for (var k0 = 0u; k0 < QB; k0 += BK) {
      // As[k][m]: dC WS[t = m][s = k0 + k], dB WS[t = k0 + k][s = m]; staged along WS's contiguous axis s
      for (var i = lid; i < BK * MT; i += WG) {
        var kk = i % BK;
        var m = i / BK;
        if (DB) {
          kk = i / MT;
          m = i % MT;
        }
        var v = 0.0;
        if (m < QB) {
          if (DB) {
            v = WS[wsb + (k0 + kk) * QB + m];
          } else {
            v = WS[wsb + m * QB + k0 + kk];
          }
        }
        As[kk * AS4 + m / 4u][m % 4u] = v;
      }
      for (var i = lid; i < BK * NT; i += WG) {
        let kk = i / NT;
        let m = i % NT;
        let t = c * Q + other * QB + k0 + kk;
        var v = 0.0;
        if (t < prm.T && n0 + m < N) { v = R[((kb * prm.T + t) * prm.G + g) * N + n0 + m]; }
        Bs[kk * BS4 + m / 4u][m % 4u] = v;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP_O}}
      }
      workgroupBarrier();
    }
  }
  {{STORE}}
}
