// Depthwise causal convolution along T, per run k, with mamba_ssm's tap order (weight[c, W−1] is the current
// token), optionally followed by SiLU (the *_silu entries):
//   y[k, b, t, c] = bias[k, c] + Σ_{j<W} weight[k, c, j] · x[k, b, t − (W−1) + j, c]   (x = 0 before t = 0)
//
// Layout (one table for every entry point; an entry leaves the bindings it does not read unused):
//   X   (K, B, T, C)  input x
//   Wt  (K, C, W)     weight
//   Bs  (K, C)        bias
//   G   (K, B, T, C)  cotangent of y
//   Out  forward, forward_silu: y (K, B, T, C); backward_dx, backward_dx_silu: dx (K, B, T, C);
//        backward_params: partial dw (K, S, C, W)
//   Out2 backward_params: partial db (K, S, C); backward_dx_silu: g_u = G·silu'(u) (K, B, T, C)
// Element threads are ordered with c fastest, so neighbouring threads touch neighbouring addresses.

struct Params { K: u32, B: u32, T: u32, C: u32, W: u32, chunk: u32, S: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Wt: array<f32>;
@group(0) @binding(3) var<storage, read> Bs: array<f32>;
@group(0) @binding(4) var<storage, read> G: array<f32>;
@group(0) @binding(5) var<storage, read_write> Out: array<f32>;
@group(0) @binding(6) var<storage, read_write> Out2: array<f32>;

// The conv's output at element i = (k, b, t, c), before any activation: the forward's sum, in its order.
fn conv_at(i: u32, t: u32, k: u32, c: u32) -> f32 {
  let wbase = (k * p.C + c) * p.W;
  var acc = Bs[k * p.C + c];
  // tap j reads time t − (W−1) + j, which exists for j ≥ W−1−t
  let j0 = select(0u, p.W - 1u - t, t + 1u < p.W);
  for (var j = j0; j < p.W; j++) {
    acc += Wt[wbase + j] * X[i - (p.W - 1u - j) * p.C];
  }
  return acc;
}

// silu and its derivative as the elementwise op writes them (kernels/unary.wgsl, lib/ops/elementwise.ts), so
// the fused conv + SiLU gives the same values as the two ops in turn.
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu_(x: f32) -> f32 { return x * sigmoid_(x); }
fn dsilu_(x: f32) -> f32 { return sigmoid_(x) * (1.0 + x * (1.0 - sigmoid_(x))); }

// One thread per output element (k, b, t, c).
@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.K * p.B * p.T * p.C) { return; }
  Out[i] = conv_at(i, (i / p.C) % p.T, i / (p.B * p.T * p.C), i % p.C);
}

// The conv followed by SiLU: y = silu(conv(x)), nothing saved (the backward recomputes the conv from x).
@compute @workgroup_size(256)
fn forward_silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.K * p.B * p.T * p.C) { return; }
  Out[i] = silu_(conv_at(i, (i / p.C) % p.T, i / (p.B * p.T * p.C), i % p.C));
}

// dx: the adjoint is an anti-causal conv with the taps reversed, one thread per (k, b, t, c):
//   dx[t, c] = Σ_j weight[c, j] · g[t + (W−1) − j, c]   over the j with t + (W−1) − j < T.
@compute @workgroup_size(256)
fn backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.K * p.B * p.T * p.C) { return; }
  let c = i % p.C;
  let t = (i / p.C) % p.T;
  let k = i / (p.B * p.T * p.C);
  let wbase = (k * p.C + c) * p.W;
  var acc = 0.0;
  // tap j reads time t + (W−1) − j, which exists for j ≥ t + W − T
  let j0 = select(0u, t + p.W - p.T, t + p.W > p.T);
  for (var j = j0; j < p.W; j++) {
    acc += Wt[wbase + j] * G[i + (p.W - 1u - j) * p.C];
  }
  Out[i] = acc;
}

// dx of silu(conv(x)), G being the cotangent of the SiLU's output: as backward_dx on g_u = G·silu'(u), u the
// conv's output recomputed from x (cheaper than a pass over a saved u). Each thread takes TS consecutive steps
// of one channel, so that the g_u of a step, which W outputs read, is computed once per thread rather than once
// per output ((TS + W − 1)/TS convs and SiLU derivatives per output instead of W); it also writes its steps' g_u
// to Out2 for backward_params. The steps are walked from the last one read down to the first, so each output
// sums its taps in backward_dx's order (j ascending) and the results equal the unfused ops'.
const TS: u32 = {{TS}}u; // 4 (SILU_DX_STEPS in lib/ops/conv1d.ts); d0..d3 below hold the TS outputs

@compute @workgroup_size(256)
fn backward_dx_silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let nTB = (p.T + TS - 1u) / TS;
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.K * p.B * nTB * p.C) { return; }
  let c = idx % p.C;
  let tb = (idx / p.C) % nTB;
  let kb = idx / (nTB * p.C); // k·B + b
  let k = kb / p.B;
  let t0 = tb * TS;
  let base = kb * p.T * p.C + c; // element (k, b, t = 0, c)
  let wlast = (k * p.C + c) * p.W + p.W - 1u; // the tap of the current token
  var d0 = 0.0;
  var d1 = 0.0;
  var d2 = 0.0;
  var d3 = 0.0;
  // output t0 + q reads step tp through tap W − 1 − (tp − t0 − q), for t0 + q ≤ tp ≤ t0 + q + W − 1 (and < T)
  var tp = min(t0 + TS + p.W - 2u, p.T - 1u) + 1u;
  loop {
    if (tp == t0) { break; }
    tp -= 1u;
    let at = base + tp * p.C;
    let gu = G[at] * dsilu_(conv_at(at, tp, k, c));
    let r = tp - t0; // ≥ 0
    if (r < p.W) { d0 += Wt[wlast - r] * gu; }
    if (r >= 1u && r - 1u < p.W) { d1 += Wt[wlast - (r - 1u)] * gu; }
    if (r >= 2u && r - 2u < p.W) { d2 += Wt[wlast - (r - 2u)] * gu; }
    if (r >= 3u && r - 3u < p.W) { d3 += Wt[wlast - (r - 3u)] * gu; }
    if (r < TS) { Out2[at] = gu; }
  }
  let o = base + t0 * p.C;
  Out[o] = d0;
  if (t0 + 1u < p.T) { Out[o + p.C] = d1; }
  if (t0 + 2u < p.T) { Out[o + 2u * p.C] = d2; }
  if (t0 + 3u < p.T) { Out[o + 3u * p.C] = d3; }
}

// Stage 1 of dweight[k, c, j] = Σ_{b,t} g[k, b, t, c] · x[k, b, t − (W−1) + j, c] and dbias[k, c] = Σ_{b,t} g,
// without atomics: thread (k, s, j, c), j ≤ W (j = W is the bias), sums the rows r = b·T + t of chunk s,
// [s·chunk, min((s+1)·chunk, B·T)), in order into the partials; the host sums the S partials in order.
@compute @workgroup_size(256)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  let W1 = p.W + 1u;
  if (i >= p.K * p.S * W1 * p.C) { return; }
  let c = i % p.C;
  let j = (i / p.C) % W1;
  let ks = i / (W1 * p.C);
  let s = ks % p.S;
  let k = ks / p.S;
  let BT = p.B * p.T;
  let r0 = s * p.chunk;
  let r1 = min(r0 + p.chunk, BT);
  // Four rows' loads are issued before their four adds, which still run in row order (the same bits as one row
  // at a time: each thread's loads were otherwise one memory round trip apart), and the row's step t = r % T is
  // carried along rather than divided out each row.
  var acc = 0.0;
  let C = p.C;
  var r = r0;
  if (j == p.W) {
    for (; r + 4u <= r1; r += 4u) {
      let gi = (k * BT + r) * C + c;
      let g0 = G[gi];
      let g1 = G[gi + C];
      let g2 = G[gi + 2u * C];
      let g3 = G[gi + 3u * C];
      acc += g0;
      acc += g1;
      acc += g2;
      acc += g3;
    }
    for (; r < r1; r++) { acc += G[(k * BT + r) * C + c]; }
    Out2[ks * C + c] = acc;
  } else {
    let lag = p.W - 1u - j; // x is read lag steps back in time (rows with t < lag read nothing)
    let back = lag * C;
    var t = r0 % p.T;
    for (; r + 4u <= r1; r += 4u) {
      let gi = (k * BT + r) * C + c;
      let t1 = select(t + 1u, 0u, t + 1u == p.T);
      let t2 = select(t1 + 1u, 0u, t1 + 1u == p.T);
      let t3 = select(t2 + 1u, 0u, t2 + 1u == p.T);
      let g0 = G[gi];
      let g1 = G[gi + C];
      let g2 = G[gi + 2u * C];
      let g3 = G[gi + 3u * C];
      let x0 = X[select(gi, gi - back, t >= lag)];
      let x1 = X[select(gi + C, gi + C - back, t1 >= lag)];
      let x2 = X[select(gi + 2u * C, gi + 2u * C - back, t2 >= lag)];
      let x3 = X[select(gi + 3u * C, gi + 3u * C - back, t3 >= lag)];
      if (t >= lag) { acc += g0 * x0; }
      if (t1 >= lag) { acc += g1 * x1; }
      if (t2 >= lag) { acc += g2 * x2; }
      if (t3 >= lag) { acc += g3 * x3; }
      t = select(t3 + 1u, 0u, t3 + 1u == p.T);
    }
    for (; r < r1; r++) {
      if (t >= lag) {
        let gi = (k * BT + r) * C + c;
        acc += G[gi] * X[gi - back];
      }
      t = select(t + 1u, 0u, t + 1u == p.T);
    }
    Out[(ks * C + c) * p.W + j] = acc;
  }
}
