// Batched matrix product C[z] = op(A[z]) · op(B[z]), op = identity or transpose, fp32.
//
// Shapes (row-major, per batch z): op(A) is (M, Kd), op(B) is (Kd, N), C is (M, N).
//   A is stored (M, Kd), or (Kd, M) when TRANS_A;  B is stored (Kd, N), or (N, Kd) when TRANS_B.
//   strideA / strideB / strideC are the element offsets between batches (0 for an operand shared by all batches).
//
// Tiling (a 16×16 = 256-thread workgroup computes one BM×BN tile of C; grid = (⌈N/BN⌉, ⌈M/BM⌉, batches)):
//   - The Kd axis is walked in steps of BK. Each step, the workgroup stages a BM×BK slice of op(A) and a BK×BN
//     slice of op(B) in workgroup memory, both stored k-major ("A transposed on store"): As[k][m], Bs[k][n].
//     Then the inner loop reads, per k, contiguous vec4s of a column of op(A) and a row of op(B).
//   - Register blocking: thread (tx, ty) owns TM×TN outputs: rows ty·4 + 64·h + (0..3) for h < TM/4 and columns
//     tx·4 + 64·g + (0..3) for g < TN/4. Splitting a thread's rows and columns into 4-wide groups 64 apart (rather
//     than one block of TM) makes the 16 threads of a half-warp read 16 consecutive vec4s of Bs (no bank
//     conflicts) and the two ty rows of a warp read two broadcast vec4s of As.
//   - Per k the thread does TM/4 + TN/4 vec4 loads from workgroup memory and TM·TN FMAs (8×8: 4 loads, 64 FMAs),
//     on accumulators held as named 4×4 matrices (struct Acc), the BK k's of a K-step written out (kSteps) with
//     constant row indices: WebGPU clamps every workgroup-array index, and only constant or loop-invariant
//     indices let that clamp leave the inner loop (measured on the H200: 6–10% faster than indexing by the loop
//     counter, the same bits).
//   - Workgroup memory is double-buffered: while computing on one buffer, the thread has already issued the global
//     loads of the next K-step into registers, and stores them into the other buffer afterwards; one barrier per
//     K-step. The K-step loop is written out two deep (buffer 0, then buffer 1), so the buffer is a constant too. Rows of As and Bs are padded by 4 floats so that transposing stores (a 4-vector of k for one m)
//     from neighbouring threads land in different banks.
//   - Split-K (for grids too small to fill the GPU): grid entry zt sums only the Kd range kChunk·(zt % kSplit)
//     ..+kChunk of batch entry zt / kSplit and writes its partial C to entry zt of a scratch; the host then sums
//     the kSplit partials in a fixed order.
//   - Global loads are vec4 along the operand's contiguous axis when that axis' length is a multiple of 4
//     (VEC_A / VEC_B; then a vec4 is either wholly inside or wholly outside the matrix), else 4 bounds-checked
//     scalar loads. Elements outside the matrix load as 0, so a partial K-step adds nothing; rows and columns
//     of C outside (M, N) are not stored.
//   - Unchecked loads: with vec4 loads on both operands and a Kd range of whole K-steps (the same for every
//     thread of a workgroup, so the branch does not diverge), nothing needs checking. Every k read is inside
//     the matrix, and a row of op(A) past M or a column of op(B) past N only reaches outputs that are not
//     stored (reads past the end of a buffer are clamped by WebGPU's robust access). Each thread then computes
//     its vec4 indices once (a Cursor) and advances them by a constant per K-step. Measured on the H200: 4096³
//     from 29–32 to 42–45 TFLOP/s in the four transposes (tests/matmul_bench.ts), the D 1024 step's matmuls
//     from 22.3 to 16.1 ms of kernel time, the same bits (the same values reach the same FMAs). The checked
//     path's index arithmetic, checks and selects were not hidden behind the FMAs: its loads alone, with one k
//     of FMAs per K-step instead of BK, took half the time of the whole kernel.
//
// Placeholders: {{TM}}, {{TN}} (4 or 8), {{BK}} (multiple of 4); {{TRANS_A}}, {{TRANS_B}}, {{VEC_A}}, {{VEC_B}}:
// `true` or `false` on GPUs, so that unused paths compile away, or on CPU adapters an expression reading bits 0..3
// of p.flags, so that one pipeline serves every combination (llvmpipe takes seconds to compile each pipeline).

struct Params {
  M: u32,
  N: u32,
  Kd: u32,
  strideA: u32,
  strideB: u32,
  strideC: u32,
  zBase: u32, // grid entry of wid.z = 0 (grids longer than the z limit take several dispatches)
  flags: u32, // TRANS_A, TRANS_B, VEC_A, VEC_B as bits 0..3 (read only where the placeholders say so)
  kSplit: u32, // split-K: grid entry zt computes the part kChunk·(zt % kSplit) ..+kChunk of the Kd sum for
  kChunk: u32, // batch entry zt / kSplit into C[zt] (kChunk a multiple of BK; 1 and Kd without split-K)
  // Element offsets added to each operand's batch offset (mod 2^32): 0 when the tensors are bound whole; a
  // dispatch over a slice of a tensor larger than one binding subtracts the slice's start (and may add a row
  // offset), so that the same indices address the slice.
  offA: u32,
  offB: u32,
  offC: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// A and B are each bound twice, as scalars and as vec4s, so both load paths see the same buffer (read-only
// aliasing is allowed); only the path selected by VEC_A / VEC_B is executed.
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read> B4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> C: array<f32>;

const TM = {{TM}}u;
const TN = {{TN}}u;
const BK = {{BK}}u;

const WG = 16u; // threads per side of the workgroup
const BM = WG * TM; // rows of C per workgroup
const BN = WG * TN; // columns of C per workgroup
const AS_ROW = (BM + 4u) / 4u; // vec4s per k-row of As (padded)
const BS_ROW = (BN + 4u) / 4u;
const A_VECS = BM * BK / 4u; // 4-element groups per tile slice
const B_VECS = BN * BK / 4u;

// Row r of As holds k = r % BK of buffer r / BK. Two-dimensional, so that the inner loop indexes rows by
// constants and columns by the thread's loop-invariant tx / ty (see kSteps).
var<workgroup> As: array<array<vec4<f32>, AS_ROW>, 2u * BK>;
var<workgroup> Bs: array<array<vec4<f32>, BS_ROW>, 2u * BK>;

fn trans_a() -> bool { return {{TRANS_A}}; }
fn trans_b() -> bool { return {{TRANS_B}}; }
fn vec_a() -> bool { return {{VEC_A}}; }
fn vec_b() -> bool { return {{VEC_B}}; }

// Reads 4 consecutive elements A[i..i+3] (i a multiple of 4 when vec_a()); the first `n` are inside the matrix.
fn readA(i: u32, n: u32) -> vec4<f32> {
  if (vec_a()) {
    return select(vec4<f32>(0.0), A4[i / 4u], n >= 4u);
  }
  // (reads past the end of the buffer are clamped by WebGPU's robust access; their values are discarded)
  let v = vec4<f32>(A[i], A[i + 1u], A[i + 2u], A[i + 3u]);
  return select(vec4<f32>(0.0), v, vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}

fn readB(i: u32, n: u32) -> vec4<f32> {
  if (vec_b()) {
    return select(vec4<f32>(0.0), B4[i / 4u], n >= 4u);
  }
  let v = vec4<f32>(B[i], B[i + 1u], B[i + 2u], B[i + 3u]);
  return select(vec4<f32>(0.0), v, vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(n));
}

// How many of the 4 consecutive indices c..c+3 are < len (0 when the row index r is out of range).
fn valid4(r: u32, rows: u32, c: u32, len: u32) -> u32 {
  if (r >= rows || c >= len) { return 0u; }
  return min(len - c, 4u);
}

// The l-th 4-element group of op(A)'s slice [m0, m0+BM) × [k0, k0+BK), read along A's contiguous axis; zeros
// for l ≥ A_VECS (threads without a group when the slice has fewer groups than the workgroup has threads).
fn loadA(aOff: u32, m0: u32, k0: u32, l: u32) -> vec4<f32> {
  if (l >= A_VECS) { return vec4<f32>(0.0); }
  if (trans_a()) { // A is (Kd, M): groups run along m
    let k = k0 + l / (BM / 4u);
    let m = m0 + 4u * (l % (BM / 4u));
    return readA(aOff + k * p.M + m, valid4(k, p.Kd, m, p.M));
  }
  let m = m0 + l / (BK / 4u); // A is (M, Kd): groups run along k
  let k = k0 + 4u * (l % (BK / 4u));
  return readA(aOff + m * p.Kd + k, valid4(m, p.M, k, p.Kd));
}

fn loadB(bOff: u32, n0: u32, k0: u32, l: u32) -> vec4<f32> {
  if (l >= B_VECS) { return vec4<f32>(0.0); }
  if (trans_b()) { // B is (N, Kd): groups run along k
    let n = n0 + l / (BK / 4u);
    let k = k0 + 4u * (l % (BK / 4u));
    return readB(bOff + n * p.Kd + k, valid4(n, p.N, k, p.Kd));
  }
  let k = k0 + l / (BN / 4u); // B is (Kd, N): groups run along n
  let n = n0 + 4u * (l % (BN / 4u));
  return readB(bOff + k * p.N + n, valid4(k, p.Kd, n, p.N));
}

// Stores the l-th group into buffer `buf` of As, k-major (transposing when the group runs along k).
fn storeA(buf: u32, l: u32, v: vec4<f32>) {
  if (l >= A_VECS) { return; }
  if (trans_a()) {
    As[buf * BK + l / (BM / 4u)][l % (BM / 4u)] = v;
  } else {
    let m = l / (BK / 4u);
    let r = buf * BK + 4u * (l % (BK / 4u));
    As[r][m / 4u][m % 4u] = v.x;
    As[r + 1u][m / 4u][m % 4u] = v.y;
    As[r + 2u][m / 4u][m % 4u] = v.z;
    As[r + 3u][m / 4u][m % 4u] = v.w;
  }
}

fn storeB(buf: u32, l: u32, v: vec4<f32>) {
  if (l >= B_VECS) { return; }
  if (trans_b()) {
    let n = l / (BK / 4u);
    let r = buf * BK + 4u * (l % (BK / 4u));
    Bs[r][n / 4u][n % 4u] = v.x;
    Bs[r + 1u][n / 4u][n % 4u] = v.y;
    Bs[r + 2u][n / 4u][n % 4u] = v.z;
    Bs[r + 3u][n / 4u][n % 4u] = v.w;
  } else {
    Bs[buf * BK + l / (BN / 4u)][l % (BN / 4u)] = v;
  }
}

// The groups of one K-step that this thread moves: each thread moves at most two groups of each slice
// (BM·BK/4 ≤ 512).
struct Staged {
  a0: vec4<f32>,
  a1: vec4<f32>,
  b0: vec4<f32>,
  b1: vec4<f32>,
}

// Loads this thread's groups of the K-step starting at k0 from global memory into registers.
fn prefetch(next: ptr<function, Staged>, aOff: u32, bOff: u32, m0: u32, n0: u32, k0: u32, tid: u32) {
  (*next).a0 = loadA(aOff, m0, k0, tid);
  if (A_VECS > 256u) { (*next).a1 = loadA(aOff, m0, k0, tid + 256u); }
  (*next).b0 = loadB(bOff, n0, k0, tid);
  if (B_VECS > 256u) { (*next).b1 = loadB(bOff, n0, k0, tid + 256u); }
}

// The unchecked path's vec4 indices of this thread's groups at the K-step starting at k0, and their step from
// one K-step to the next (in vec4s: every index and step is a multiple of 4 elements when VEC_A and VEC_B).
struct Cursor {
  a0: u32,
  a1: u32,
  b0: u32,
  b1: u32,
  da: u32,
  db: u32,
}

// The vec4 index of the l-th group of op(A)'s slice (as loadA, without its checks).
fn vecIndexA(aOff: u32, m0: u32, k0: u32, l: u32) -> u32 {
  if (trans_a()) {
    return (aOff + (k0 + l / (BM / 4u)) * p.M + m0 + 4u * (l % (BM / 4u))) / 4u;
  }
  return (aOff + (m0 + l / (BK / 4u)) * p.Kd + k0 + 4u * (l % (BK / 4u))) / 4u;
}

fn vecIndexB(bOff: u32, n0: u32, k0: u32, l: u32) -> u32 {
  if (trans_b()) {
    return (bOff + (n0 + l / (BK / 4u)) * p.Kd + k0 + 4u * (l % (BK / 4u))) / 4u;
  }
  return (bOff + (k0 + l / (BN / 4u)) * p.N + n0 + 4u * (l % (BN / 4u))) / 4u;
}

fn cursorAt(aOff: u32, bOff: u32, m0: u32, n0: u32, k0: u32, tid: u32) -> Cursor {
  var c: Cursor;
  c.a0 = vecIndexA(aOff, m0, k0, tid);
  c.a1 = vecIndexA(aOff, m0, k0, tid + 256u);
  c.b0 = vecIndexB(bOff, n0, k0, tid);
  c.b1 = vecIndexB(bOff, n0, k0, tid + 256u);
  c.da = select(BK / 4u, BK * p.M / 4u, trans_a()); // BK columns of (M, Kd), or BK rows of (Kd, M)
  c.db = select(BK * p.N / 4u, BK / 4u, trans_b());
  return c;
}

// prefetch without checks: K-step s of this thread's groups.
fn prefetchUnchecked(next: ptr<function, Staged>, c: Cursor, s: u32, tid: u32) {
  if (tid < A_VECS) { (*next).a0 = A4[c.a0 + s * c.da]; }
  if (A_VECS > 256u) { (*next).a1 = A4[c.a1 + s * c.da]; }
  if (tid < B_VECS) { (*next).b0 = B4[c.b0 + s * c.db]; }
  if (B_VECS > 256u) { (*next).b1 = B4[c.b1 + s * c.db]; }
}

// Stores them into buffer `buf` of As and Bs.
fn stage(buf: u32, tid: u32, next: Staged) {
  storeA(buf, tid, next.a0);
  if (A_VECS > 256u) { storeA(buf, tid + 256u, next.a1); }
  storeB(buf, tid, next.b0);
  if (B_VECS > 256u) { storeB(buf, tid + 256u, next.b1); }
}

// The thread's outputs as up to four 4×4 blocks c{h}{g} (rows ty·4 + 64h, columns tx·4 + 64g); the blocks with
// h = 1 exist only when TM = 8, those with g = 1 only when TN = 8. Everything register-held is a named variable and
// every branch on TM or TN is on a constant: there are no loops over registers, which the shader compiler may not
// unroll (an indexed array would then live in slow local memory).
struct Acc {
  c00: mat4x4<f32>,
  c01: mat4x4<f32>,
  c10: mat4x4<f32>,
  c11: mat4x4<f32>,
}

// One k of the inner product: acc += op(A)[rows, k] ⊗ op(B)[k, cols], k being row r of As and Bs.
fn kStep(acc: Acc, r: u32, tx: u32, ty: u32) -> Acc {
  var c = acc;
  let a0 = As[r][ty];
  let b0 = Bs[r][tx];
  c.c00 = outer4(c.c00, a0, b0);
  if (TN == 8u) {
    c.c01 = outer4(c.c01, a0, Bs[r][tx + WG]);
  }
  if (TM == 8u) {
    let a1 = As[r][ty + WG];
    c.c10 = outer4(c.c10, a1, b0);
    if (TN == 8u) {
      c.c11 = outer4(c.c11, a1, Bs[r][tx + WG]);
    }
  }
  return c;
}

// One K-step: the BK k's of the buffer starting at row r0, written out. Called with constant r0 only, so that
// once inlined every row index is a constant and every column index (tx, ty, + WG) is loop-invariant: WebGPU's
// bounds clamps on workgroup arrays (min(index, length - 1)) then fold or hoist out of the loop, and the loads
// address with immediate offsets. Indexing by loop counters (as before) left a clamp and an address computation
// in front of each of the 4 loads per 64 FMAs, and a loop the compiler might not unroll.
fn kSteps(acc: Acc, r0: u32, tx: u32, ty: u32) -> Acc {
  var c = acc;
  c = kStep(c, r0, tx, ty);
  c = kStep(c, r0 + 1u, tx, ty);
  c = kStep(c, r0 + 2u, tx, ty);
  c = kStep(c, r0 + 3u, tx, ty);
  c = kStep(c, r0 + 4u, tx, ty);
  c = kStep(c, r0 + 5u, tx, ty);
  c = kStep(c, r0 + 6u, tx, ty);
  c = kStep(c, r0 + 7u, tx, ty);
  if (BK == 16u) {
    c = kStep(c, r0 + 8u, tx, ty);
    c = kStep(c, r0 + 9u, tx, ty);
    c = kStep(c, r0 + 10u, tx, ty);
    c = kStep(c, r0 + 11u, tx, ty);
    c = kStep(c, r0 + 12u, tx, ty);
    c = kStep(c, r0 + 13u, tx, ty);
    c = kStep(c, r0 + 14u, tx, ty);
    c = kStep(c, r0 + 15u, tx, ty);
  }
  return c;
}

// c += a ⊗ b for a 4×4 block: column i of c is output row i (4 columns).
fn outer4(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4<f32>(a.x), b, c[0]), fma(vec4<f32>(a.y), b, c[1]), fma(vec4<f32>(a.z), b, c[2]),
    fma(vec4<f32>(a.w), b, c[3]));
}

// Writes a 4×4 block with its top-left corner at (m, n), skipping what lies outside C.
fn storeBlock(cOff: u32, m: u32, n: u32, c: mat4x4<f32>) {
  storeRow(cOff, m, n, c[0]);
  storeRow(cOff, m + 1u, n, c[1]);
  storeRow(cOff, m + 2u, n, c[2]);
  storeRow(cOff, m + 3u, n, c[3]);
}

fn storeRow(cOff: u32, m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  let i = cOff + m * p.N + n;
  if (n < p.N) { C[i] = v.x; }
  if (n + 1u < p.N) { C[i + 1u] = v.y; }
  if (n + 2u < p.N) { C[i + 2u] = v.z; }
  if (n + 3u < p.N) { C[i + 3u] = v.w; }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * WG + tx;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let zt = wid.z + p.zBase;
  let z = zt / p.kSplit;
  let aOff = z * p.strideA + p.offA;
  let bOff = z * p.strideB + p.offB;
  let kBeg = (zt % p.kSplit) * p.kChunk;
  let steps = (min(p.Kd - kBeg, p.kChunk) + BK - 1u) / BK;

  var acc = Acc();
  var next: Staged;
  let unchecked = vec_a() && vec_b() && min(p.Kd - kBeg, p.kChunk) % BK == 0u;
  let cur = cursorAt(aOff, bOff, m0, n0, kBeg, tid);

  // Prologue: stage K-step 0 into buffer 0.
  if (steps > 0u) {
    prefetch(&next, aOff, bOff, m0, n0, kBeg, tid);
    stage(0u, tid, next);
  }
  workgroupBarrier();

  // Two K-steps per iteration, the first computing on buffer 0 and the second on buffer 1, so that each calls
  // kSteps with a constant first row.
  var s = 0u;
  loop {
    if (s >= steps) { break; }
    // Issue the global loads of the next K-step now; their latency hides behind the FMAs below.
    var more = s + 1u < steps;
    if (more) {
      if (unchecked) {
        prefetchUnchecked(&next, cur, s + 1u, tid);
      } else {
        prefetch(&next, aOff, bOff, m0, n0, kBeg + (s + 1u) * BK, tid);
      }
    }
    acc = kSteps(acc, 0u, tx, ty);
    if (more) { stage(1u, tid, next); }
    workgroupBarrier();
    s++;

    if (s >= steps) { break; }
    more = s + 1u < steps;
    if (more) {
      if (unchecked) {
        prefetchUnchecked(&next, cur, s + 1u, tid);
      } else {
        prefetch(&next, aOff, bOff, m0, n0, kBeg + (s + 1u) * BK, tid);
      }
    }
    acc = kSteps(acc, BK, tx, ty);
    if (more) { stage(0u, tid, next); }
    workgroupBarrier();
    s++;
  }

  let cOff = zt * p.strideC + p.offC;
  let m = m0 + ty * 4u;
  let n = n0 + tx * 4u;
  storeBlock(cOff, m, n, acc.c00);
  if (TN == 8u) { storeBlock(cOff, m, n + 4u * WG, acc.c01); }
  if (TM == 8u) { storeBlock(cOff, m + 4u * WG, n, acc.c10); }
  if (TM == 8u && TN == 8u) { storeBlock(cOff, m + 4u * WG, n + 4u * WG, acc.c11); }
}
