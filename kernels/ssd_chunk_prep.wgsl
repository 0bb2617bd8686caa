// Chunked SSD scan, step 0 (forward and backward): the decay sums of one chunk of one (row, head), one thread each.
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

fn log_decay(kb: u32, h: u32, t: u32, a: f32) -> f32 {
  if (t >= prm.T) { return 0.0; }
  return DT[(kb * prm.T + t) * prm.H + h] * a;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = gid.x + gid.y * nwg.x * 64u;
  if (w >= prm.count) { return; } // count = rows·H·nC
  let c = w % prm.nC;
  let kh = w / prm.nC; // local row · H + head
  let h = kh % prm.H;
  let kb = prm.kb0 + kh / prm.H;
  let a = Av[(kb / prm.Bt) * prm.H + h];
  let t0 = c * Q;
  let base = kh * prm.nC * Q + t0;
  var tot: array<f32, NB>;
  var rem: array<f32, QB>;
  for (var b = 0u; b < NB; b++) {
    var r = 0.0;
    for (var i = QB; i > 0u; i--) {
      rem[i - 1u] = r;
      r += log_decay(kb, h, t0 + b * QB + i - 1u, a);
    }
    var loc = 0.0;
    for (var i = 0u; i < QB; i++) {
      loc += log_decay(kb, h, t0 + b * QB + i, a);
      DEC[base + b * QB + i] = vec4<f32>(loc, rem[i], 0.0, 0.0);
    }
    tot[b] = loc;
  }
  let tb = (kh * prm.nC + c) * TABW * TABW;
  for (var i = 0u; i < TABW; i++) {
    var run = 0.0;
    for (var j = 0u; j < TABW; j++) {
      if (j <= i) {
        TAB[tb + i * TABW + j] = 0.0;
      } else {
        TAB[tb + i * TABW + j] = run;
        if (j <= NB) { run += tot[j - 1u]; }
      }
    }
  }
  for (var b = 0u; b < NB; b++) {
    let pre = TAB[tb + b + 1u]; // blocks before b
    let post = TAB[tb + (b + 1u) * TABW + NB + 1u]; // blocks after b
    for (var i = 0u; i < QB; i++) {
      let d = DEC[base + b * QB + i];
      DEC[base + b * QB + i] = vec4<f32>(d.x, d.y, exp(pre + d.x), exp(d.y + post));
    }
  }
}
