// Chunked SSD scan, backward: dC (DB false) or dB (DB true) of one block where P % 4 = 0 and N % 4 = 0
// (ssd_chunk_dbc.wgsl is the general form, with the same math and layout), one workgroup per (row, group, chunk c,
// block, tile of N columns); the sum over the heads of the group runs inside, in order, so no per-head scratch:
//   dC_t = Σ_h fdec_t·(dy_tᵀ Hout_{c−1})  +  Σ_{bs ≤ bt} Σ_{s ≤ t} WS[t, s]·B_s        (rows t of block bt)
//   dB_s = Σ_h bdec_s·dt_s·(x_sᵀ Γ_c)    +  Σ_{bt ≥ bs} Σ_{t ≥ s} WS[t, s]·C_t        (rows s of block bs)
// Each head's state part is also dotted with C_t (B_s): v_t = fdec_t·<dy_t, Hout_{c−1} C_t> and
// u_s = bdec_s·dt_s·<x_s, Γ_c B_s>, the state parts of d(dt·A), written per N tile to VU.
// Speed: one loop over the slices of every head's state part, then of the block pairs; the operands are read as
// 16-byte loads, and each slice's loads are issued into registers before the previous slice is multiplied.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> U: array<vec4<f32>>; // dy (dC) or x (dB): (K, Bt, T, H, P)
@group(0) @binding(2) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(3) var<storage, read> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(4) var<storage, read> S: array<vec4<f32>>; // HS (dC) or GS (dB): (rows, H, nC − 1, P, N)
@group(0) @binding(5) var<storage, read> WS: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB)
@group(0) @binding(6) var<storage, read> R: array<vec4<f32>>; // B (dC) or C (dB): the right operand of the WS part
@group(0) @binding(7) var<storage, read> E: array<vec4<f32>>; // C (dC) or B (dB): dotted with each head's state part
@group(0) @binding(8) var<storage, read_write> OUT: array<vec4<f32>>; // dC or dB: (K, Bt, T, G, N)
@group(0) @binding(9) var<storage, read_write> VU: array<f32>; // v (dC) or u (dB): (rows, H, nC·Q, NNT)

const DB: bool = {{DB}};
const NNT: u32 = {{NNT}}u; // tiles along N
const NSL: u32 = QB / BK; // slices per block pair
const NSLP: u32 = (P + BK - 1u) / BK; // slices per head of the state part
const QB4: u32 = QB / 4u;
const NT4: u32 = NT / 4u;

var<workgroup> red: array<f32, {{RED_LEN}}>; // (TX, QB)

// One cell's part of <E_t, head part>.
fn edot(kb: u32, g: u32, t0: u32, n0: u32, row: u32, col4: u32, v: vec4<f32>) -> f32 {
  let t = t0 + row;
  if (row >= QB || t >= prm.T || n0 + 4u * col4 >= N) { return 0.0; }
  return dot(v, E[(((kb * prm.T + t) * prm.G + g) * N + n0) / 4u + col4]);
}

fn store_out(kb: u32, g: u32, t0: u32, n0: u32, row: u32, col4: u32, v: vec4<f32>) {
  let t = t0 + row;
  if (row >= QB || t >= prm.T || n0 + 4u * col4 >= N) { return; }
  OUT[(((kb * prm.T + t) * prm.G + g) * N + n0) / 4u + col4] = v;
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
  // the slices: every head's state part (when the chunk has one), then the block pairs of the chunk: dC bs = 0 ..
  // blk, dB bt = blk .. NB − 1
  var hasState = c >= 1u;
  if (DB) { hasState = c + 1u < prm.nC; }
  var nstate = 0u;
  var sj = 0u;
  if (hasState) {
    nstate = prm.HG * NSLP;
    sj = select(c - 1u, c, DB);
  }
  var npairs = blk + 1u;
  if (DB) { npairs = NB - blk; }
  let total = nstate + npairs * NSL;
  {{DECL_LOADS}}
  var li = 0u;
  {{LOAD}}
  for (var it = 0u; it < total; it++) {
    {{STORE}}
    workgroupBarrier();
    li = it + 1u;
    if (li < total) {
      {{LOAD}}
    }
    if (it < nstate) {
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP_E}}
      }
    } else {
      for (var kk = 0u; kk < BK; kk++) {
        let ai = kk * AS4 + ty;
        let bi = kk * BS4 + tx;
        {{KSTEP_O}}
      }
    }
    workgroupBarrier();
    if (it < nstate && (it + 1u) % NSLP == 0u) {
      // a head's state part is complete: its v (u) per row, then into the output
      let kh = kbl * prm.H + g * prm.HG + it / NSLP;
      {{VDOT}}
      workgroupBarrier();
      for (var i = lid; i < QB; i += WG) {
        var a = 0.0;
        for (var x = 0u; x < TX; x++) { a += red[x * QB + i]; }
        VU[(kh * Tp + t0 + i) * NNT + ntile] = a;
      }
      workgroupBarrier();
      {{ADD_E}}
      {{ZERO_E}}
    }
  }
  {{STORE_OUT}}
}
