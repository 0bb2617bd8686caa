// Fused AdamW update of one parameter tensor (K, n) IN PLACE: params, first and second moments are read and
// written by this one dispatch. This is the only kernel of mimetic that mutates its inputs (lib/train/optim.ts).
//
// Element type T is f32, or vec4<f32> when n % 4 == 0 (then no vec4 straddles two runs, and loads are 16 B).
// Placeholders: {{T}}.
//
// Per element, in torch.optim.AdamW's order (g first scaled by the run's global-norm clip factor, as
// torch.nn.utils.clip_grad_norm_ does before the step):
//   g ← g · min(1, clip / (norm_k + 1e-6))                  (only when clip > 0)
//   p ← p · (1 − lr·wd)                                     decoupled weight decay (wd = 0 on no-decay tensors)
//   m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)    bc1 = 1 − β1^t, bc2 = 1 − β2^t (from the CPU)

alias T = {{T}};

struct Params {
  count: u32,    // elements of T in the tensor: K · nw
  nw: u32,       // elements of T per run
  beta1: f32,
  one_minus_beta1: f32, // from the CPU in f64: 1 − f32(0.999) is off by 1.3e-5 relative, 1 − 0.999 rounded is not
  beta2: f32,
  one_minus_beta2: f32,
  eps: f32,
  bc1: f32,      // 1 − β1^t
  bc2_sqrt: f32, // sqrt(1 − β2^t)
  clip: f32,     // global-norm clip; 0 = off
  decay: u32,    // 1: this tensor takes weight decay
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> P: array<T>;     // params (K, n), updated in place
@group(0) @binding(2) var<storage, read> G: array<T>;           // gradients (K, n)
@group(0) @binding(3) var<storage, read_write> M: array<T>;     // first moment (K, n), in place
@group(0) @binding(4) var<storage, read_write> V: array<T>;     // second moment (K, n), in place
@group(0) @binding(5) var<storage, read> HP: array<f32>;        // (K, 2): lr, weight decay of each run
@group(0) @binding(6) var<storage, read> NORM: array<f32>;      // (K): pre-clip global grad norm of each run

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= u.count) { return; }
  let k = i / u.nw;
  let lr = HP[2u * k];
  let wd = select(0.0, HP[2u * k + 1u], u.decay == 1u);
  var g = G[i];
  if (u.clip > 0.0) { g = g * min(1.0, u.clip / (NORM[k] + 1e-6)); }
  let m = u.beta1 * M[i] + u.one_minus_beta1 * g;
  let v = u.beta2 * V[i] + u.one_minus_beta2 * g * g;
  M[i] = m;
  V[i] = v;
  P[i] = P[i] * (1.0 - lr * wd) - (lr / u.bc1) * m / (sqrt(v) / u.bc2_sqrt + u.eps);
}
