// Backward of max over an axis: dx = g where x equals the max (every tied position receives g), else 0.
// Layout (outer, n, inner); Y and G are (outer, inner).

struct Params { outer: u32, n: u32, inner: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<storage, read_write> DX: array<f32>;

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.outer * p.n * p.inner) { return; }
  let i = idx % p.inner;
  let o = idx / (p.n * p.inner);
  let j = o * p.inner + i;
  DX[idx] = select(0.0, G[j], X[idx] == Y[j]);
}
