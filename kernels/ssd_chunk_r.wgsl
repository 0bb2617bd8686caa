// Chunked SSD scan, backward: the block-pair matrices of the group, one workgroup per (row, group, chunk, pair
// bs ≤ bt, part of the group's heads). For each head h of its part (in order) it forms the QB × QB product over P
//   R_h[t, s] = <dy_t, dt_s·x_s>                          (t in block bt, s in block bs)
// and from it, with L_h[t, s] = exp(seg(s, t)) on s ≤ t (0 above the diagonal of a diagonal pair):
//   W_h = R_h ∘ L_h, summed over the part's heads into WS (the diagonal parts of dC = WS·B and dB = WSᵀ·C; with
//   more than one part, WS holds one sum per part, which the host then adds up in part order),
//   Z_h = W_h ∘ CB on s < t, whose row sums (ZR[t][bs]) and column sums (ZC[s][bt]) give the diagonal part of
//   d(dt·A) (lib/ops/ssd_chunked.ts). Sums over the tile's threads run in a fixed order.
// Speed (measured on the H200 by ablation): the operand loads were half the time, so dy and x are read as vec4s
// where P % 4 = 0, each slice's loads are issued into registers before the previous slice is multiplied, dt is
// read once per vec4, and the decay factors of a head are computed once per step into workgroup memory (on a cross
// pair L = exp(loc_t + btw)·exp(rem_s), a product of one factor per row and one per column, both ≤ 1); CB, the
// same for every head, is held in registers. Heads are split into parts of RP because a workgroup walks its heads
// one after another: with all of a group's heads in one workgroup there were too few workgroups to fill the GPU
// (192 at D 1024, B 64, T 128), each a long chain of barriers.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

const RP: u32 = {{RP}}u; // heads per part
const NRP: u32 = {{NRP}}u; // parts per group: ceil(HG / RP)

alias PV = {{PV}}; // vec4<f32> where P % 4 = 0 (16-byte loads), else f32
const PW: u32 = {{PW}}u; // floats per PV
const SL: u32 = BK / PW; // PVs per staged row of a slice

@group(0) @binding(1) var<storage, read> DY: array<PV>; // (K, Bt, T, H, P)
@group(0) @binding(2) var<storage, read> X: array<PV>; // (K, Bt, T, H, P)
@group(0) @binding(3) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(4) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(5) var<storage, read> TAB: array<f32>; // (rows, H, nC, TABW, TABW)
@group(0) @binding(6) var<storage, read> CB: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB / 4)
@group(0) @binding(7) var<storage, read_write> WS: array<vec4<f32>>; // (NRP, rows, G, nC, NP, QB, QB / 4)
@group(0) @binding(8) var<storage, read_write> ZR: array<f32>; // (rows, H, nC·Q, NB)
@group(0) @binding(9) var<storage, read_write> ZC: array<f32>; // (rows, H, nC·Q, NB)

var<workgroup> zr: array<f32, {{ZR_LEN}}>; // row sums per column thread: (TX, QB)
var<workgroup> zc: array<f32, {{ZC_LEN}}>; // column sums per row thread: (TY, QB)
var<workgroup> fr: array<f32, QB>; // per row t of block bt: exp(loc_t + btw) (cross pair) or loc_t (diagonal)
var<workgroup> fc: array<f32, QB>; // per column s of block bs: exp(rem_s) (cross pair) or loc_s (diagonal)

struct Weighed {
  w: vec4<f32>,
  z: vec4<f32>,
}

// W and Z of one cell (row tl of block bt, columns 4·col4 .. +3 of block bs) from its R and CB.
fn weigh(tl: u32, col4: u32, cross: bool, cb: vec4<f32>, r: vec4<f32>) -> Weighed {
  var out: Weighed;
  if (tl >= QB || 4u * col4 >= QB) { return out; }
  let a = fr[tl];
  for (var i = 0u; i < 4u; i++) {
    let sl = 4u * col4 + i;
    if (cross) {
      let wv = r[i] * a * fc[sl];
      out.w[i] = wv;
      out.z[i] = wv * cb[i];
    } else if (sl <= tl) {
      let wv = r[i] * exp(a - fc[sl]);
      out.w[i] = wv;
      if (sl < tl) { out.z[i] = wv * cb[i]; }
    }
  }
  return out;
}

fn load_cb(cbb4: u32, row: u32, col4: u32) -> vec4<f32> {
  if (row >= QB || 4u * col4 >= QB) { return vec4<f32>(0.0); }
  return CB[cbb4 + row * (QB / 4u) + col4];
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
  if (w >= prm.count) { return; } // count = rows·G·nC·NP·NRP
  let part = w % NRP;
  let wp = w / NRP; // the block pair's index among the dispatch's rows·G·nC·NP
  let pr = wp % NP;
  let c = (wp / NP) % prm.nC;
  let kg = wp / (NP * prm.nC); // local row · G + group
  let g = kg % prm.G;
  let kbl = kg / prm.G;
  let kb = prm.kb0 + kbl;
  var bt = 0u;
  while ((bt + 1u) * (bt + 2u) / 2u <= pr) { bt++; }
  let bs = pr - bt * (bt + 1u) / 2u;
  let cross = bs < bt;
  let tg0 = c * Q + bt * QB;
  let sg0 = c * Q + bs * QB;
  let cbb4 = wp * QB * (QB / 4u);
  let wsb4 = (part * (prm.count / NRP) + wp) * QB * (QB / 4u); // this part's sum in WS
  let ty = lid / TX;
  let tx = lid % TX;
  let Tp = prm.nC * Q;
  {{DECL_W}}
  {{DECL_R}}
  {{DECL_CB}}
  // The operand slices in flight: slice (lh, lk0) is loaded into registers while the previous one is multiplied.
  {{DECL_LOADS}}
  let hBeg = g * prm.HG + part * RP;
  let hEnd = min(hBeg + RP, (g + 1u) * prm.HG);
  var lh = hBeg;
  var lk0 = 0u;
  {{LOAD}}
  for (var h = hBeg; h < hEnd; h++) {
    let kh = kbl * prm.H + h;
    // this head's decay factors (the previous head's weigh is past the barrier that ended it)
    var btw = 0.0;
    if (cross) { btw = TAB[(kh * prm.nC + c) * TABW * TABW + (bs + 1u) * TABW + bt + 1u]; }
    for (var i = lid; i < 2u * QB; i += WG) {
      if (i < QB) {
        let lt = DEC[kh * Tp + tg0 + i].x;
        fr[i] = select(lt, exp(lt + btw), cross);
      } else {
        let d = DEC[kh * Tp + sg0 + i - QB];
        fc[i - QB] = select(d.x, exp(d.y), cross);
      }
    }
    {{ZERO_R}}
    for (var k0 = 0u; k0 < P; k0 += BK) {
      // As[k][m] = dy_{tg0 + m}[k0 + k], Bs[k][m] = dt·x_{sg0 + m}[k0 + k]
      {{STORE}}
      workgroupBarrier();
      lk0 = k0 + BK;
      lh = h;
      if (lk0 >= P) {
        lk0 = 0u;
        lh = h + 1u;
      }
      if (lh < hEnd) {
        {{LOAD}}
      }
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP_R}}
      }
      workgroupBarrier();
    }
    {{WEIGH}}
    workgroupBarrier();
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
