// Chunked SSD scan, step 0 (forward and backward): the decay sums of one chunk of one (row, head), one workgroup each.
// With a_t = dt_t·A ≤ 0 (0 on padded steps t ≥ T), for each step t of block b:
//   DEC[t] = (loc_t, rem_t, fdec_t, bdec_t):
//     loc_t = Σ a over block b's steps up to t (t included), rem_t = Σ a over its steps after t (t excluded),
//     fdec_t = exp(decay from the chunk's start through t), bdec_t = exp(decay after t to the chunk's end);
//   TAB[i][j] (virtual blocks 0 ≤ i < j ≤ NB + 1; block b is virtual b + 1, 0 and NB + 1 the chunk's ends)
//     = Σ of the block totals strictly between i and j: TAB[0][NB + 1] is the chunk's whole decay.
// Every sum runs over terms of one sign, in a fixed order, so each is exact to a few ulps of itself; the decay
// between two steps is then a sum of a few such pieces (see lib/ops/ssd_chunked.ts), never a difference of long
// running sums.

//@use ssd_chunk_parts.wgsl params

@group(0) @binding(1) var<storage, read> DT: array<f32>; // (K, Bt, T, H)
@group(0) @binding(2) var<storage, read> Av: array<f32>; // (K, H)
@group(0) @binding(3) var<storage, read_write> DEC: array<vec4<f32>>; // (rows, H, nC·Q)
@group(0) @binding(4) var<storage, read_write> TAB: array<f32>; // (rows, H, nC, TABW, TABW)

var<workgroup> sloc: array<f32, Q>; // a_t, then loc_t
var<workgroup> srem: array<f32, Q>; // rem_t
var<workgroup> stot: array<f32, NB>; // block totals
var<workgroup> spre: array<f32, NB>; // TAB[0][b + 1]: the blocks before b
var<workgroup> spost: array<f32, NB>; // TAB[b + 1][NB + 1]: the blocks after b

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= prm.count) { return; } // count = rows·H·nC
  let c = w % prm.nC;
  let kh = w / prm.nC; // local row · H + head
  let h = kh % prm.H;
  let kb = prm.kb0 + kh / prm.H;
  let a = Av[(kb / prm.Bt) * prm.H + h];
  let t0 = c * Q;
  for (var i = lid; i < Q; i += WG) {
    var v = 0.0;
    if (t0 + i < prm.T) { v = DT[(kb * prm.T + t0 + i) * prm.H + h] * a; }
    sloc[i] = v;
  }
  workgroupBarrier();
  // one thread per block: rem backwards, then loc in place
  for (var b = lid; b < NB; b += WG) {
    var r = 0.0;
    for (var i = QB; i > 0u; i--) {
      srem[b * QB + i - 1u] = r;
      r += sloc[b * QB + i - 1u];
    }
    var loc = 0.0;
    for (var i = 0u; i < QB; i++) {
      loc += sloc[b * QB + i];
      sloc[b * QB + i] = loc;
    }
    stot[b] = loc;
  }
  workgroupBarrier();
  // one thread per row i of the table: running sums of the block totals after virtual block i
  let tb = (kh * prm.nC + c) * TABW * TABW;
  for (var i = lid; i < TABW; i += WG) {
    var run = 0.0;
    for (var j = 0u; j < TABW; j++) {
      if (j <= i) {
        TAB[tb + i * TABW + j] = 0.0;
      } else {
        TAB[tb + i * TABW + j] = run;
        if (i == 0u && j <= NB) { spre[j - 1u] = run; }
        if (i >= 1u && j == NB + 1u) { spost[i - 1u] = run; }
        if (j <= NB) { run += stot[j - 1u]; }
      }
    }
  }
  workgroupBarrier();
  let base = kh * prm.nC * Q + t0;
  for (var i = lid; i < Q; i += WG) {
    let b = i / QB;
    DEC[base + i] = vec4<f32>(sloc[i], srem[i], exp(spre[b] + sloc[i]), exp(srem[i] + spost[b]));
  }
}
