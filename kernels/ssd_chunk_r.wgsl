// Chunked SSD scan, backward: the block-pair matrices of the group, one workgroup per (row, group, chunk, pair
// bs ≤ bt). For each head h of the group (in order) it forms the QB × QB product over P
//   R_h[t, s] = <dy_t, dt_s·x_s>                          (t in block bt, s in block bs)
// and from it, with L_h[t, s] = exp(seg(s, t)) on s ≤ t (0 above the diagonal of a diagonal pair):
//   W_h = R_h ∘ L_h, summed over the heads into WS (the diagonal parts of dC = WS·B and dB = WSᵀ·C),
//   Z_h = W_h ∘ CB on s < t, whose row sums (ZR[t][bs]) and column sums (ZC[s][bt]) give the diagonal part of
//   d(dt·A) (lib/ops/ssd_chunked.ts). Sums over the tile's threads run in a fixed order.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> DY: array<f32>; // (K, Bt, T, H, P)
@group(0) @binding(2) var<storage, read> X: array<f32>; // (K, Bt, T, H, P)
@group(0) @binding(3) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(4) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(5) var<storage, read> TAB: array<f32>; // (rows, H, nC, TABW, TABW)
@group(0) @binding(6) var<storage, read> CB: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB / 4)
@group(0) @binding(7) var<storage, read_write> WS: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB / 4)
@group(0) @binding(8) var<storage, read_write> ZR: array<f32>; // (rows, H, nC·Q, NB)
@group(0) @binding(9) var<storage, read_write> ZC: array<f32>; // (rows, H, nC·Q, NB)

var<workgroup> zr: array<f32, {{ZR_LEN}}>; // row sums per column thread: (TX, QB)
var<workgroup> zc: array<f32, {{ZC_LEN}}>; // column sums per row thread: (TY, QB)

struct Weighed {
  w: vec4<f32>,
  z: vec4<f32>,
}

// W and Z of one cell (row tl of block bt, columns 4·col4 .. +3 of block bs) from its R.
fn weigh(kh: u32, tg0: u32, sg0: u32, tl: u32, col4: u32, cross: bool, btw: f32, cbb4: u32, r: vec4<f32>)
    -> Weighed {
  var out: Weighed;
  if (tl >= QB || 4u * col4 >= QB) { return out; }
  let Tp = prm.nC * Q;
  let lt = DEC[kh * Tp + tg0 + tl].x;
  let cb = CB[cbb4 + tl * (QB / 4u) + col4];
  for (var i = 0u; i < 4u; i++) {
    let sl = 4u * col4 + i;
    if (cross || sl <= tl) {
      let d = DEC[kh * Tp + sg0 + sl];
      var e = lt - d.x;
      if (cross) { e = d.y + btw + lt; }
      let wv = r[i] * exp(e);
      out.w[i] = wv;
      if (cross || sl < tl) { out.z[i] = wv * cb[i]; }
    }
  }
  return out;
}

fn store_zc(ty: u32, col4: u32, v: vec4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    let s = 4u * col4 + i;
    if (s < QB) { zc[ty * QB + s] = v[i]; }
  }
}

fn store_w(wb4: u32, row: u32, col4: u32, v: vec4<f32>) {
  if (row < QB && 4u * col4 < QB) { WS[wb4 + row * (QB / 4u) + col4] = v; }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·G·nC·NP
  let pr = w % NP;
  let c = (w / NP) % prm.nC;
  let kg = w / (NP * prm.nC); // local row · G + group
  let g = kg % prm.G;
  let kbl = kg / prm.G;
  let kb = prm.kb0 + kbl;
  var bt = 0u;
  while ((bt + 1u) * (bt + 2u) / 2u <= pr) { bt++; }
  let bs = pr - bt * (bt + 1u) / 2u;
  let cross = bs < bt;
  let tg0 = c * Q + bt * QB;
  let sg0 = c * Q + bs * QB;
  let cbb4 = w * QB * (QB / 4u);
  let ty = lid / TX;
  let tx = lid % TX;
  {{DECL_W}}
  {{DECL_R}}
  for (var j = 0u; j < prm.HG; j++) {
    let h = g * prm.HG + j;
    let kh = kbl * prm.H + h;
    {{ZERO_R}}
    for (var k0 = 0u; k0 < P; k0 += BK) {
      // As[k][m] = dy_{tg0 + m}[k0 + k], Bs[k][m] = dt·x_{sg0 + m}[k0 + k]: both read along p
      for (var i = lid; i < BK * MT; i += WG) {
        let kk = i % BK;
        let m = i / BK;
        let t = tg0 + m;
        var v = 0.0;
        if (m < QB && t < prm.T && k0 + kk < P) { v = DY[((kb * prm.T + t) * prm.H + h) * P + k0 + kk]; }
        As[kk * AS4 + m / 4u][m % 4u] = v;
      }
      for (var i = lid; i < BK * NT; i += WG) {
        let kk = i % BK;
        let m = i / BK;
        let s = sg0 + m;
        var v = 0.0;
        if (m < QB && s < prm.T && k0 + kk < P) {
          v = DT[(kb * prm.T + s) * prm.H + h] * X[((kb * prm.T + s) * prm.H + h) * P + k0 + kk];
        }
        Bs[kk * BS4 + m / 4u][m % 4u] = v;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP_R}}
      }
      workgroupBarrier();
    }
    var btw = 0.0;
    if (cross) { btw = TAB[(kh * prm.nC + c) * TABW * TABW + (bs + 1u) * TABW + bt + 1u]; }
    {{WEIGH}}
    workgroupBarrier();
    let Tp = prm.nC * Q;
    for (var i = lid; i < QB; i += WG) {
      var a = 0.0;
      for (var x = 0u; x < TX; x++) { a += zr[x * QB + i]; }
      ZR[(kh * Tp + tg0 + i) * NB + bs] = a;
      var b = 0.0;
      for (var y = 0u; y < TY; y++) { b += zc[y * QB + i]; }
      ZC[(kh * Tp + sg0 + i) * NB + bt] = b;
    }
    workgroupBarrier();
  }
  {{STORE_W}}
}
