// Chunked SSD scan, the per-block outputs where P % 4 = 0 and N % 4 = 0 (ssd_chunk_out.wgsl is the general form,
// with the same math and layout): one workgroup per (row, head, chunk c, block, tile of P columns) computes a
// QB × PT block as one product over [the causal blocks of the chunk | the N states]:
//   forward (BWD false), rows t of block bt:
//     y_t = Σ_{bs ≤ bt} Σ_{s ≤ t} CB[t, s]·exp(seg(s, t))·dt_s·x_s  +  fdec_t·(Hout_{c−1} C_t)  +  D·x_t
//   backward (BWD true), rows s of block bs:
//     dX̃_s = Σ_{bt ≥ bs} Σ_{t ≥ s} CB[t, s]·exp(seg(s, t))·dy_t  +  bdec_s·(Γ_c B_s)
//     dx_s = dt_s·dX̃_s + D·dy_s ; QS: <dX̃_s, x_s> (the direct part of d dt_s), per P tile ; DDP: Σ dy·x
// Speed: the operands are read as 16-byte loads, and each slice's loads are issued into registers before the
// previous slice is multiplied (one loop over the slices of every block pair, then of the state term). On a cross
// pair (bs < bt) the decay is a product of a factor per row and a factor per column, both ≤ 1:
//   exp(seg(s, t)) = exp(loc_t)·exp(rem_s + TAB[bs+1][bt+1])     (rows t, forward)
//                  = exp(rem_s)·exp(TAB[bs+1][bt+1] + loc_t)     (rows s, backward)
// so CB is staged as it is, the column factor scales the staged x (dy) rows, and the row factor scales the sum of
// the cross pairs once, before the diagonal pair (the last one multiplied) adds its per-element exp(loc_t − loc_s).
// The state term is skipped in the first chunk (forward) and the last (backward).

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> CB: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB)
@group(0) @binding(2) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(3) var<storage, read> TAB: array<f32>; // (rows, H, nC, TABW, TABW)
@group(0) @binding(4) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(5) var<storage, read> U: array<vec4<f32>>; // x (forward) or dy (backward): (K, Bt, T, H, P)
@group(0) @binding(6) var<storage, read> V: array<vec4<f32>>; // C (forward) or B (backward): (K, Bt, T, G, N)
@group(0) @binding(7) var<storage, read> S: array<vec4<f32>>; // HS (forward) or GS (backward): (rows, H, nC − 1, P, N)
@group(0) @binding(8) var<storage, read> Dv: array<f32>; // (K, H)
@group(0) @binding(9) var<storage, read_write> OUT: array<vec4<f32>>; // y or dx: (K, Bt, T, H, P)
@group(0) @binding(10) var<storage, read> X: array<vec4<f32>>; // backward: x
@group(0) @binding(11) var<storage, read_write> QS: array<f32>; // backward: (rows, H, nC·Q, NPT)
@group(0) @binding(12) var<storage, read_write> DDP: array<f32>; // backward: one partial of Σ dy·x per workgroup

const BWD: bool = {{BWD}};
const NPT: u32 = {{NPT}}u; // tiles along P
const NSL: u32 = QB / BK; // slices per block pair
const QB4: u32 = QB / 4u;
const NT4: u32 = NT / 4u;

var<workgroup> red: array<f32, {{RED_LEN}}>; // max(TX·QB, WGP)
var<workgroup> locb: array<f32, QB>; // loc_t of this block's steps
var<workgroup> dtb: array<f32, QB>; // dt of this block's steps (forward)
var<workgroup> rowf: array<f32, QB>; // the cross pairs' row factor: exp(loc_t) (forward), exp(rem_s) (backward)
var<workgroup> sdec: array<f32, QB>; // the state term's row factor: fdec_t (forward), bdec_s (backward)
var<workgroup> pf: array<f32, 2u * QB>; // a cross pair's column factor, by pair parity

fn out_fwd(kb: u32, h: u32, t0: u32, p0: u32, dskip: f32, row: u32, col4: u32, v: vec4<f32>) {
  let t = t0 + row;
  if (row >= QB || t >= prm.T || p0 + 4u * col4 >= P) { return; }
  let i4 = (((kb * prm.T + t) * prm.H + h) * P + p0) / 4u + col4;
  OUT[i4] = v + dskip * U[i4];
}

// Writes dx of one cell; returns its parts of <dX̃_t, x_t> and of Σ dy·x.
fn out_bwd(kb: u32, h: u32, t0: u32, p0: u32, dskip: f32, row: u32, col4: u32, v: vec4<f32>) -> vec2<f32> {
  let t = t0 + row;
  if (row >= QB || t >= prm.T || p0 + 4u * col4 >= P) { return vec2<f32>(0.0); }
  let i4 = (((kb * prm.T + t) * prm.H + h) * P + p0) / 4u + col4;
  let dtv = DT[(kb * prm.T + t) * prm.H + h];
  let e = U[i4];
  let xv = X[i4];
  OUT[i4] = dtv * v + dskip * e;
  return vec2<f32>(dot(v, xv), dot(e, xv));
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
  // the chunk's causal pairs, cross pairs first, the diagonal pair last: forward bs = 0 .. blk (bt = blk),
  // backward bt = blk + 1 .. NB − 1, then blk (bs = blk)
  var npairs = blk + 1u;
  if (BWD) { npairs = NB - blk; }
  let npsl = npairs * NSL; // slices of the pairs; the state term's follow
  var hasState = c >= 1u;
  if (BWD) { hasState = c + 1u < prm.nC; }
  var total = npsl;
  var sb = 0u;
  if (hasState) {
    total += (N + BK - 1u) / BK;
    sb = (kh * (prm.nC - 1u) + select(c - 1u, c, BWD)) * P * N;
  }
  for (var i = lid; i < QB; i += WG) {
    let d = DEC[kh * Tp + t0 + i];
    locb[i] = d.x;
    rowf[i] = exp(select(d.x, d.y, BWD));
    sdec[i] = select(d.z, d.w, BWD);
    var dv = 0.0;
    if (t0 + i < prm.T) { dv = DT[(kb * prm.T + t0 + i) * prm.H + h]; }
    dtb[i] = dv;
  }
  pair_factors(kb, h, kh, c, blk, npairs, tb, 0u, lid);
  {{DECL_LOADS}}
  var li = 0u;
  {{LOAD}}
  workgroupBarrier();
  for (var it = 0u; it < total; it++) {
    {{STORE}}
    workgroupBarrier();
    li = it + 1u;
    if (li < total) {
      if (li < npsl && li % NSL == 0u) { pair_factors(kb, h, kh, c, blk, npairs, tb, li / NSL, lid); }
      {{LOAD}}
    }
    if (it == npsl - NSL) {
      // the cross pairs are summed: their row factor, before the diagonal pair's first slice
      {{SCALE_ROWS}}
    }
    for (var kk = 0u; kk < BK; kk++) {
      let ai = kk * AS4 + ty;
      let bi = kk * BS4 + tx;
      {{KSTEP}}
    }
    workgroupBarrier();
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

// The blocks (bt, bs) of pair jj of block blk, in the order above.
fn pair_blocks(blk: u32, npairs: u32, jj: u32) -> vec2<u32> {
  if (BWD) { return vec2<u32>(blk + (jj + 1u) % npairs, blk); }
  return vec2<u32>(blk, jj);
}

// A cross pair's column factor into pf (by pair parity): forward exp(rem_s + btw)·dt_s, backward exp(btw + loc_t).
fn pair_factors(kb: u32, h: u32, kh: u32, c: u32, blk: u32, npairs: u32, tb: u32, jj: u32, lid: u32) {
  let bb = pair_blocks(blk, npairs, jj);
  let bt = bb.x;
  let bs = bb.y;
  if (bs >= bt) { return; } // the diagonal pair has none
  let btw = TAB[tb + (bs + 1u) * TABW + bt + 1u];
  let Tp = prm.nC * Q;
  let o = (jj % 2u) * QB;
  for (var i = lid; i < QB; i += WG) {
    if (BWD) {
      pf[o + i] = exp(btw + DEC[kh * Tp + c * Q + bt * QB + i].x);
    } else {
      let s = c * Q + bs * QB + i;
      var dv = 0.0;
      if (s < prm.T) { dv = DT[(kb * prm.T + s) * prm.H + h]; }
      pf[o + i] = exp(DEC[kh * Tp + s].y + btw) * dv;
    }
  }
}
