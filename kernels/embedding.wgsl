// Embedding lookup and its deterministic backward.
// Layout: table (K, V, D), ids (K, N) with N = B·T, out / G (K, N, D), dTable (K, V, D); all row-major.
// Ids outside [0, V) are clamped to [0, V-1] in both directions (a kernel cannot report bad values; callers that
// want an error validate on the CPU with checkIds), so the backward is the exact adjoint of what the forward did.
// Placeholder: {{PER_THREAD}} = ceil(D / 256), the number of columns of a dTable row each thread accumulates.

// The forward may cover a chunk of the positions (outputs larger than one binding): ids and out are bound from
// position `row0` (k·N + n), and the dispatch sees `rows` positions from there (all K·N from 0 otherwise).
// The backward may split the positions into chunks of `chunk` (a multiple of 256; N when unsplit), one partial
// dTable per chunk, summed afterwards in chunk order.
struct Params { K: u32, V: u32, N: u32, D: u32, row0: u32, rows: u32, chunk: u32 }

@group(0) @binding(0) var<uniform> p: Params;

fn clamp_id(id: i32) -> u32 { return u32(clamp(id, 0, i32(p.V) - 1)); }

// ---- forward: out[k, n, d] = table[k, clamp(ids[k, n]), d]; one thread per output element ----
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.rows * p.D) { return; }
  let d = i % p.D;
  let kn = i / p.D;            // k·N + n − row0
  let k = (kn + p.row0) / p.N;
  let v = clamp_id(ids[kn]);
  out[i] = table[(k * p.V + v) * p.D + d];
}

// ---- backward: dTable[k, v, :] = Σ_{n : clamp(ids[k, n]) = v} G[k, n, :], summed in increasing n ----
// One workgroup of 256 per (k, v) row and chunk of positions. The workgroup walks the chunk's ids in tiles of 256:
// each thread loads one id into shared memory and raises the tile's flag if it matches v. Tiles without a match
// (nearly all of them when V is large) cost one coalesced load and two barriers; in a tile with matches every
// thread walks its 256 ids in order and adds the matching G rows to its columns d = lid + 256·j. Fixed order, no
// float atomics: bit-identical run to run. Cost: K·V·N id loads and compares (served from cache) plus K·N·D reads
// of G and K·V·D writes per chunk. With a small V nearly every tile matches, and the walk over all N positions
// was serial in each of only K·V workgroups: hence the chunks (lib/ops/embedding.ts, `embeddingBackwardChunks`).
// Every row of every chunk is written, so the output needs no zero fill.
@group(0) @binding(1) var<storage, read> bw_ids: array<i32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> dTable: array<f32>; // (chunks, K, V, D)

var<workgroup> tile_ids: array<u32, 256>;
// Two flags used alternately by consecutive tiles, so one can be reset while the other is being read.
var<workgroup> tile_hit: array<atomic<u32>, 2>;

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x; // chunk·K·V + k·V + v, uniform per workgroup
  let rows = p.K * p.V;
  let chunks = (p.N + p.chunk - 1u) / p.chunk;
  if (w >= rows * chunks) { return; }
  let row = w % rows;
  let k = row / p.V;
  let v = row % p.V;
  let n0 = (w / rows) * p.chunk;
  let len = min(p.chunk, p.N - n0);
  var acc: array<f32, {{PER_THREAD}}>;
  for (var j = 0u; j < {{PER_THREAD}}u; j++) { acc[j] = 0.0; }
  if (lid < 2u) { atomicStore(&tile_hit[lid], 0u); }
  workgroupBarrier();
  let tiles = (len + 255u) / 256u;
  for (var t = 0u; t < tiles; t++) {
    let n = t * 256u + lid;
    var id = 0xffffffffu;  // lanes past the end match nothing
    if (n < len) { id = clamp_id(bw_ids[k * p.N + n0 + n]); }
    tile_ids[lid] = id;
    if (id == v) { atomicOr(&tile_hit[t & 1u], 1u); }
    workgroupBarrier();
    // the other flag was last read before the previous barrier and is next raised after the next one
    if (lid == 0u) { atomicStore(&tile_hit[(t + 1u) & 1u], 0u); }
    if (atomicLoad(&tile_hit[t & 1u]) != 0u) {
      let count = min(256u, len - t * 256u);
      for (var m = 0u; m < count; m++) {
        if (tile_ids[m] == v) {
          let g_row = (k * p.N + n0 + t * 256u + m) * p.D;
          for (var j = 0u; j < {{PER_THREAD}}u; j++) {
            let d = lid + 256u * j;
            if (d < p.D) { acc[j] += G[g_row + d]; }
          }
        }
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < {{PER_THREAD}}u; j++) {
    let d = lid + 256u * j;
    if (d < p.D) { dTable[w * p.D + d] = acc[j]; }
  }
}
