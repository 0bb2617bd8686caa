// Chunked SSD scan, step 1 (forward and backward): CB[t, s] = C_t · B_s for the steps t of block bt and s of block bs
// of one chunk, per (row, group, chunk, block pair bs ≤ bt): a QB × QB product over N. The heads of a group share it.
// Entries with s > t in a diagonal pair (bs = bt) are computed and never read.

//@use ssd_chunk_parts.wgsl params
//@use ssd_chunk_parts.wgsl tile

alias PV = {{PV}}; // vec4<f32> where N % 4 = 0 (16-byte loads), else f32
const PW: u32 = {{PW}}u; // floats per PV
const SL: u32 = BK / PW; // PVs per staged row of a slice

@group(0) @binding(1) var<storage, read> Bm: array<PV>; // (K, Bt, T, G, N)
@group(0) @binding(2) var<storage, read> Cm: array<PV>; // (K, Bt, T, G, N)
@group(0) @binding(3) var<storage, read_write> CB: array<vec4<f32>>; // (rows, G, nC, NP, QB, QB)

fn store_cb(ob4: u32, row: u32, col4: u32, v: vec4<f32>) {
  if (row < QB && 4u * col4 < QB) { CB[ob4 + row * (QB / 4u) + col4] = v; }
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
  // As[k][m] = C_{t = tb0 + m}[k0 + k], Bs[k][m] = B_{s = sb0 + m}[k0 + k]: both read along n, each slice's loads
  // in flight while the previous slice is multiplied
  {{DECL_LOADS}}
  var lk0 = 0u;
  {{LOAD}}
  for (var k0 = 0u; k0 < N; k0 += BK) {
    {{STORE}}
    workgroupBarrier();
    lk0 = k0 + BK;
    if (lk0 < N) {
      {{LOAD}}
    }
    for (var kk = 0u; kk < BK; kk++) {
      let ai = kk * AS4 + ty;
      let bi = kk * BS4 + tx;
      {{KSTEP}}
    }
    workgroupBarrier();
  }
  let ob4 = w * QB * (QB / 4u);
  {{STORE_CB}}
}
