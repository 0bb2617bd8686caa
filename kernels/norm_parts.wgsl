// Parts shared by the row-norm kernels (norm.wgsl, gated_norm.wgsl), spliced in by `//@use` lines (see
// `kernelSource` in lib/core/kernels.ts): the fixed-order sum of a row's partials, and the loads of a thread's
// elements of a row into registers. They use the kernel's T, DV, TPR, NV and its workgroup array `red` (the
// lanes' partials). Not a kernel on its own.

//@part row_total
// Sum of the TPR partials red[first ..< first + TPR] of one row in a fixed order: four running sums over the
// partials ≡ 0, 1, 2, 3 (mod 4), then (s0 + s1) + (s2 + s3); below four lanes, in order.
fn rowTotal(first: u32) -> f32 {
  if (TPR < 4u) {
    var t = red[first];
    for (var i = 1u; i < TPR; i++) { t += red[first + i]; }
    return t;
  }
  var s = vec4<f32>(red[first], red[first + 1u], red[first + 2u], red[first + 3u]);
  for (var i = 4u; i < TPR; i += 4u) {
    s += vec4<f32>(red[first + i], red[first + i + 1u], red[first + i + 2u], red[first + i + 3u]);
  }
  return (s.x + s.y) + (s.z + s.w);
}
//@endpart

//@part in_row
// Whether element c + lane + j·TPR is inside the row.
fn inRow(lane: u32, c: u32, j: u32) -> bool { return c + lane + j * TPR < DV; }
//@endpart

//@part load FN BUF: a loader of the thread's elements of chunk c of a row of BUF
// The thread's elements of chunk c of a row of {{BUF}} (`at`: the row's first element + lane); 0 outside the row.
fn {{FN}}(at: u32, lane: u32, c: u32, live: bool) -> array<T, NV> {
  var v: array<T, NV>;
  //@repeat NV
  if (live && inRow(lane, c, $iu)) { v[$i] = {{BUF}}[at + c + $iu * TPR]; }
  //@end
  return v;
}
//@endpart

//@part load_gw
// The same of ĝ = g·w (`wat`: the weight row's first element + lane).
fn loadGW(at: u32, wat: u32, lane: u32, c: u32, live: bool) -> array<T, NV> {
  var v: array<T, NV>;
  //@repeat NV
  if (live && inRow(lane, c, $iu)) { v[$i] = G[at + c + $iu * TPR] * Wt[wat + c + $iu * TPR]; }
  //@end
  return v;
}
//@endpart
