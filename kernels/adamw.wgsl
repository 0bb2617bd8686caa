// Fused AdamW update of up to TENSORS parameter tensors (K, n_j) IN PLACE: each tensor's params, first and
// second moments are read and written by this one dispatch. This is the only kernel of mimetic that mutates its
// inputs (lib/train/optim.ts).
//
// Element type T is f32, or vec4<f32> when every tensor of the dispatch has n_j % 4 == 0 (then no vec4 straddles
// two runs, and loads are 16 B). Thread i updates element i − beg_j of tensor j, the last tensor whose range
// starts at or before i. Several tensors share a dispatch because a model has dozens of small ones, and a
// dispatch each cost more than their traffic; each element's arithmetic is the same as with one per dispatch.
// Placeholders (lib/train/optim.ts): T, TENSORS, BINDINGS (P_j, G_j, M_j, V_j at bindings 3 + 4j ..), UPDATES (one
// `update_j` per tensor), CASES (one `case` per tensor calling it).
//
// Per element, in torch.optim.AdamW's order (g first scaled by the run's global-norm clip factor, as
// torch.nn.utils.clip_grad_norm_ does before the step):
//   g ← g · min(1, clip / (norm_k + 1e-6))                  (only when clip > 0)
//   p ← p · (1 − lr·wd)                                     decoupled weight decay (wd = 0 on no-decay tensors)
//   m ← β1·m + (1 − β1)·g ;  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)    bc1 = 1 − β1^t, bc2 = 1 − β2^t (from the CPU)

alias T = {{T}};

struct Tensor {
  count: u32, // elements of T in the tensor: K · nw
  nw: u32, // elements of T per run
  decay: u32, // 1: this tensor takes weight decay
  beg: u32, // its first thread in the dispatch
}

struct Params {
  total: u32, // threads of the dispatch: the tensors' counts summed
  tensors: u32,
  beta1: f32,
  one_minus_beta1: f32, // from the CPU in f64: 1 − f32(0.999) is off by 1.3e-5 relative, 1 − 0.999 rounded is not
  beta2: f32,
  one_minus_beta2: f32,
  eps: f32,
  bc1: f32, // 1 − β1^t
  bc2_sqrt: f32, // sqrt(1 − β2^t)
  clip: f32, // global-norm clip; 0 = off
  pad0: u32,
  pad1: u32,
  t: array<Tensor, {{TENSORS}}>,
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> HP: array<f32>; // (K, 2): lr, weight decay of each run
@group(0) @binding(2) var<storage, read> NORM: array<f32>; // (K): pre-clip global grad norm of each run
{{BINDINGS}}

// The update of one element from its gradient g, moments m0, v0 and parameter p0; returns (p, m, v).
struct Updated {
  p: T,
  m: T,
  v: T,
}

fn adamw(k: u32, decay: u32, g0: T, m0: T, v0: T, p0: T) -> Updated {
  let lr = HP[2u * k];
  let wd = select(0.0, HP[2u * k + 1u], decay == 1u);
  var g = g0;
  if (u.clip > 0.0) { g = g * min(1.0, u.clip / (NORM[k] + 1e-6)); }
  let m = u.beta1 * m0 + u.one_minus_beta1 * g;
  let v = u.beta2 * v0 + u.one_minus_beta2 * g * g;
  return Updated(p0 * (1.0 - lr * wd) - (lr / u.bc1) * m / (sqrt(v) / u.bc2_sqrt + u.eps), m, v);
}

{{UPDATES}}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= u.total) { return; }
  var j = 0u;
  for (var q = 1u; q < u.tensors; q++) { if (i >= u.t[q].beg) { j = q; } }
  let t = u.t[j];
  let e = i - t.beg;
  let k = e / t.nw;
  switch j {
    {{CASES}}
    default: {}
  }
}
