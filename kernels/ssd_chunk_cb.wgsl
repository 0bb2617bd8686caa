// Chunked SSD scan, step 1 (forward and backward): CB[t, s] = C_t · B_s for the steps t of block bt and s of block bs
// of one chunk, per (row, group, chunk, block pair bs ≤ bt): a QB × QB product over N. The heads of a group share it.
// Entries with s > t in a diagonal pair (bs = bt) are computed and never read.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

@group(0) @binding(1) var<storage, read> Bm: array<f32>; // (K, Bt, T, G, N)
@group(0) @binding(2) var<storage, read> Cm: array<f32>; // (K, Bt, T, G, N)
@group(0) @binding(3) var<storage, read_write> CB: array<f32>; // (rows, G, nC, NP, QB, QB)

fn store_cb(ob: u32, row: u32, col4: u32, v: vec4<f32>) {
  if (row >= QB) { return; }
  for (var i = 0u; i < 4u; i++) {
    let col = 4u * col4 + i;
    if (col < QB) { CB[ob + row * QB + col] = v[i]; }
  }
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
  let kb = prm.kb0 + kg / prm.G;
  var bt = 0u;
  while ((bt + 1u) * (bt + 2u) / 2u <= pr) { bt++; }
  let bs = pr - bt * (bt + 1u) / 2u;
  let tb0 = c * Q + bt * QB;
  let sb0 = c * Q + bs * QB;
  let ty = lid / TX;
  let tx = lid % TX;
  {{DECL}}
  for (var k0 = 0u; k0 < N; k0 += BK) {
    // As[k][m] = C_{t = tb0 + m}[k0 + k], Bs[k][m] = B_{s = sb0 + m}[k0 + k]: both read along n
    for (var i = lid; i < BK * MT; i += WG) {
      let kk = i % BK;
      let m = i / BK;
      let t = tb0 + m;
      var v = 0.0;
      if (m < QB && t < prm.T && k0 + kk < N) { v = Cm[((kb * prm.T + t) * prm.G + g) * N + k0 + kk]; }
      As[kk * AS4 + m / 4u][m % 4u] = v;
    }
    for (var i = lid; i < BK * NT; i += WG) {
      let kk = i % BK;
      let m = i / BK;
      let s = sb0 + m;
      var v = 0.0;
      if (m < QB && s < prm.T && k0 + kk < N) { v = Bm[((kb * prm.T + s) * prm.G + g) * N + k0 + kk]; }
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
  let ob = w * QB * QB;
  {{STORE}}
}
