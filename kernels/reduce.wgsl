// Reduction over one axis of a tensor viewed as (outer, n, inner) -> (outer, inner).
// Placeholders: {{INIT}} the identity, {{COMBINE}} an expression of a and b.

// `cols` reduces the n axis in `parts` parts of `chunk` (outer, parts, inner); parts = 1, chunk = n for the whole.
struct Params { outer: u32, n: u32, inner: u32, chunk: u32, parts: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn combine_(a: f32, b: f32) -> f32 { return {{COMBINE}}; }

var<workgroup> partial: array<f32, 256>;

// inner == 1: one workgroup of 256 per output; strided partial reductions then a tree in shared memory.
// Workgroups are laid out (x, y) with row = x + y·nx.
@compute @workgroup_size(256)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.outer) { return; }  // uniform per workgroup
  var acc: f32 = {{INIT}};
  let base = row * p.n;
  for (var k = lid; k < p.n; k += 256u) { acc = combine_(acc, X[base + k]); }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = combine_(partial[lid], partial[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u) { Y[row] = partial[0]; }
}

// inner > 1: one thread per output element (and part); reads of neighbouring threads are contiguous along inner.
@compute @workgroup_size(256)
fn cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.outer * p.parts * p.inner) { return; }
  let i = idx % p.inner;
  let op = idx / p.inner;  // o·parts + part
  let o = op / p.parts;
  let k0 = (op % p.parts) * p.chunk;
  let k1 = min(p.n, k0 + p.chunk);
  var acc: f32 = {{INIT}};
  // Eight loads issued before their eight combines, which still run in k order (the same bits as one at a time):
  // each thread's loads are otherwise one DRAM round trip apart, and split-K's 27 partials took 27 of them.
  let row0 = o * p.n;
  var k = k0;
  for (; k + 8u <= k1; k += 8u) {
    let b = (row0 + k) * p.inner + i;
    let v0 = X[b];
    let v1 = X[b + p.inner];
    let v2 = X[b + 2u * p.inner];
    let v3 = X[b + 3u * p.inner];
    let v4 = X[b + 4u * p.inner];
    let v5 = X[b + 5u * p.inner];
    let v6 = X[b + 6u * p.inner];
    let v7 = X[b + 7u * p.inner];
    acc = combine_(combine_(combine_(combine_(acc, v0), v1), v2), v3);
    acc = combine_(combine_(combine_(combine_(acc, v4), v5), v6), v7);
  }
  for (; k < k1; k++) { acc = combine_(acc, X[(row0 + k) * p.inner + i]); }
  Y[idx] = acc;
}
