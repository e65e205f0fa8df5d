// Runs the CUDA kernels of kernels/src/dw_cuda.rs on the CPU, one emulated thread after another
// (grid-stride loops; dw_grad_weight with blockDim 1, so its shared-memory tree reduction is trivial),
// to check their indexing against PyTorch without a GPU. Driven by run.sh.
#include <cmath>
struct D3 { unsigned x; };
static D3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __shared__ static
#define __syncthreads() ((void)0)
#include DW_CU  // -DDW_CU=\"path\": the kernel source extracted from kernels/src/dw_cuda.rs
extern "C" void run(int which, const float* a, const float* b, float* out, int B,int C,int H,int W,int K,int S,int OH,int OW, int grid, int block) {
  gridDim.x = grid; blockDim.x = block;
  for (unsigned bx = 0; bx < (unsigned)grid; ++bx) for (unsigned tx = 0; tx < (unsigned)block; ++tx) {
    blockIdx.x = bx; threadIdx.x = tx;
    if (which == 0) dw_fwd(a,b,out,B,C,H,W,K,S,OH,OW);
    else if (which == 1) dw_grad_input(a,b,out,B,C,H,W,K,S,OH,OW);
    else dw_grad_weight(a,b,out,B,C,H,W,K,S,OH,OW);
  }
}
