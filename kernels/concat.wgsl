// Concatenation along one axis, and its inverse. The whole tensor W is viewed as (outer, n, inner), its n axis
// the pieces' axes one after another: piece j covers columns [e_{j−1}, e_j) (e_{−1} = 0) and is itself
// (outer, e_j − e_{j−1}, inner).
//   gather:  W[o, c, i] = X_j[o, c − e_{j−1}, i]     (concat)
//   scatter: X_j[o, c − e_{j−1}, i] = W[o, c, i]     (split)
// One thread per element of W in the dispatch's columns, so neighbouring threads touch neighbouring addresses of
// W and of the piece.
// Placeholders (filled by lib/ops/concat.ts): WHOLE, the access mode of W; PIECES, the bindings X0.. of the 1 to
// 4 pieces of one dispatch; COPY, one `if (c < e_j)` block per piece, moving element e of X_j.

struct Params {
  outer: u32,
  n: u32, // columns of W
  inner: u32,
  c0: u32, // the first column of W that this dispatch's pieces cover
  span: u32, // how many: the pieces' columns summed
  e0: u32, // the end column of each piece, from c0 (those past the dispatch's last piece are span)
  e1: u32,
  e2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, {{WHOLE}}> W: array<f32>;
{{PIECES}}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 256u; // (o, c, i) over the dispatch's columns
  if (t >= p.outer * p.span * p.inner) { return; }
  let i = t % p.inner;
  let c = (t / p.inner) % p.span;
  let o = t / (p.inner * p.span);
  let idx = (o * p.n + p.c0 + c) * p.inner + i;
  // piece j holds the columns [b, ends[j]) of the dispatch: its element (o, c − b, i)
  let ends = array<u32, 4>(p.e0, p.e1, p.e2, p.span);
  var b = 0u;
  {{COPY}}
}
