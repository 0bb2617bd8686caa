// Parts shared by the chunked SSD scan kernels (ssd_chunk_*.wgsl), spliced in by `//@use` lines (see `kernelSource`
// in lib/core/kernels.ts). Not a kernel on its own. The algorithm and every buffer layout: lib/ops/ssd_chunked.ts.

//@part params: the uniform parameters of every chunked-scan kernel, and the sizes they all use
struct Params {
  T: u32,
  H: u32,
  HG: u32, // heads per group (head h reads group h / HG)
  G: u32,
  Bt: u32,
  nC: u32, // chunks: ceil(T / Q)
  kb0: u32, // the first row (k·Bt + b) of this dispatch; scratch buffers are indexed from it
  count: u32, // work items of this dispatch (workgroups, or threads for the prep kernel)
}

@group(0) @binding(0) var<uniform> prm: Params;

const P: u32 = {{P}}u;
const N: u32 = {{N}}u;
const QB: u32 = {{QB}}u; // steps per block (the tile length along time)
const NB: u32 = {{NB}}u; // blocks per chunk
const Q: u32 = QB * NB; // steps per chunk
const NP: u32 = NB * (NB + 1u) / 2u; // block pairs (bt, bs) with bs ≤ bt in a chunk; pair index bt·(bt+1)/2 + bs
const TABW: u32 = NB + 2u; // side of a chunk's table of sums between blocks
//@endpart

//@part tile: a register tile of MT × NT outputs held by TY × TX threads, each RM rows × RN columns (generated
// code names them <prefix><i>_<j>, one vec4 of 4 columns each), and the two operand slices of BK steps of the
// inner dimension it is accumulated from, both stored k-major as vec4s: As[k][m/4], Bs[k][n/4], rows padded by
// one vec4 so that stores running along k land in different banks.
const TY: u32 = {{TY}}u;
const TX: u32 = {{TX}}u;
const WG: u32 = {{WG}}u; // TY·TX threads
const WGP: u32 = {{WGP}}u; // WG rounded up to a power of two (tree sums)
const MT: u32 = {{MT}}u; // tile rows, TY·RM
const NT: u32 = {{NT}}u; // tile columns, TX·RN
const BK: u32 = {{BK}}u; // inner steps per staged slice
const AS4: u32 = {{AS4}}u; // vec4s per k-row of As: MT/4 + 1
const BS4: u32 = {{BS4}}u; // vec4s per k-row of Bs: NT/4 + 1

var<workgroup> As: array<vec4<f32>, {{AS_LEN}}>;
var<workgroup> Bs: array<vec4<f32>, {{BS_LEN}}>;
//@endpart

//@part tree_sum: red[0] = Σ red[0..WG) in a fixed order (a tree of pairs); every thread must call it
  workgroupBarrier();
  for (var stride = WGP / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride && lid + stride < WG) { red[lid] += red[lid + stride]; }
    workgroupBarrier();
  }
//@endpart
