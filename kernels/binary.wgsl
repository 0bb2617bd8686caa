// Elementwise binary map c = a ∘ b with NumPy broadcasting, up to rank 6.
// Placeholder {{OP}}: an f32 expression of a and b. Shapes and strides (0 on broadcast axes) come in Params,
// outermost first, padded at the front to rank 6.
// A dispatch may cover a chunk of the output (tensors larger than one binding): C is bound from output index
// `base`, and an operand bound from index `aoff` (`boff`) is read at its broadcast index minus that offset.

struct Params {
  n: u32,
  s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32,
  a0: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32,
  b0: u32, b1: u32, b2: u32, b3: u32, b4: u32, b5: u32,
  base: u32, aoff: u32, boff: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> Bv: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

fn op_(a: f32, b: f32) -> f32 { return {{OP}}; }

@compute @workgroup_size(256)
fn same_shape(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  C[i] = op_(A[i], Bv[i]);
}

@compute @workgroup_size(256)
fn broadcast(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let shape = array<u32, 6>(p.s0, p.s1, p.s2, p.s3, p.s4, p.s5);
  let sa = array<u32, 6>(p.a0, p.a1, p.a2, p.a3, p.a4, p.a5);
  let sb = array<u32, 6>(p.b0, p.b1, p.b2, p.b3, p.b4, p.b5);
  var rem = i + p.base;
  var ia = 0u;
  var ib = 0u;
  for (var d = 5i; d >= 0; d--) {
    let k = rem % shape[d];
    rem = rem / shape[d];
    ia += k * sa[d];
    ib += k * sb[d];
  }
  C[i] = op_(A[ia - p.aoff], Bv[ib - p.boff]);
}
