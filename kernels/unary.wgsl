// Elementwise unary map y = f(x) and its backward dx = g * f'(x, y), over n contiguous f32 elements.
// Placeholders: {{FORWARD}} an f32 expression of x (and p.alpha, p.beta); {{DERIVATIVE}} an expression of x and y.
// Grid: 1-D over n, folded into (x, y) workgroups of 256 when n > 65535·256.

struct Params { n: u32, alpha: f32, beta: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> src2: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// softplus, stable for large |x|: log(1 + e^x) = max(x, 0) + log(1 + e^-|x|)
fn softplus_(x: f32) -> f32 { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }

fn forward_(x: f32) -> f32 { return {{FORWARD}}; }
fn derivative_(x: f32, y: f32) -> f32 { return {{DERIVATIVE}}; }

// src = x, src2 unused (bound to x), dst = y
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  dst[i] = forward_(src[i]);
}

// src = x, src2 = g (cotangent of y), dst = dx; y is recomputed from x (cheaper than storing it)
@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let x = src[i];
  dst[i] = src2[i] * derivative_(x, forward_(x));
}
