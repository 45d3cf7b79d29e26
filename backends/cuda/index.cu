// Indexing kernels (the CUDA side of autograd/ops_index.cpp and the embedding op): index range
// checks, embedding forward, index_add (embedding / index_select backward), gather, scatter-add,
// and the row copies of cat.
//
// Legend (as backends/cpu/index_kernels.h): the op's dim d splits a shape into (O, N, I):
//   O product of the sizes before d   N size of d in the source   I product of the sizes after d
//   K length of the index (size of d in the index / output)
//   V vocabulary rows, L lookups, D features (embedding: weight (V,D), indices (L), y (L,D))
//
// index_add without float atomics: the indices are sorted stably (CUB radix sort of
// (index, position) pairs), which groups the positions of each row n in increasing order; one
// thread per output element then sums its group in that order. The result has the CPU's bits (the
// CPU adds the same values in the same order) and does not depend on scheduling.
#include <cub/device/device_radix_sort.cuh>
#include "backends/cuda/common.cuh"

namespace megagrad::cuda {

namespace {

// ---------------------------------------------------------------- embedding forward
// y (L,D) = weight[idx[l]*rs + d*cs]: block (32, 8), a row l per y-thread, columns by 32.
template <typename T>
__global__ void __launch_bounds__(kThreads)
embedding_forward_kernel(const T* __restrict__ w, int64_t rs, int64_t cs, const int64_t* __restrict__ idx, int64_t L,
                         int64_t D, T* __restrict__ y) {
  const int64_t l = (int64_t)blockIdx.x * 8 + threadIdx.y;
  if (l >= L) return;
  const T* wr = w + idx[l] * rs;
  T* yr = y + l * D;
  for (int64_t d = threadIdx.x; d < D; d += 32) yr[d] = wr[d * cs];
}

// ---------------------------------------------------------------- index_add (sorted)
__global__ void make_keys_kernel(const int64_t* __restrict__ idx, int64_t K, unsigned* __restrict__ keys,
                                 int* __restrict__ pos) {
  for (int64_t k = (int64_t)blockIdx.x * kThreads + threadIdx.x; k < K; k += (int64_t)gridDim.x * kThreads) {
    keys[k] = (unsigned)idx[k];
    pos[k] = (int)k;
  }
}

// begin[n], end[n]: the range of sorted positions whose key is n (both 0 for an absent n).
__global__ void segment_bounds_kernel(const unsigned* __restrict__ sorted_keys, int64_t K, int* __restrict__ begin,
                                      int* __restrict__ end) {
  for (int64_t p = (int64_t)blockIdx.x * kThreads + threadIdx.x; p < K; p += (int64_t)gridDim.x * kThreads) {
    const unsigned key = sorted_keys[p];
    if (p == 0 || sorted_keys[p - 1] != key) begin[key] = (int)p;
    if (p == K - 1 || sorted_keys[p + 1] != key) end[key] = (int)(p + 1);
  }
}

// gx[o, n, i] = sum over p in [begin[n], end[n]) of g[o, pos[p], i], in p order (= k order:
// the sort is stable). Block (32, 8): a row (o, n) per y-thread, i by 32 (coalesced).
template <typename T>
__global__ void __launch_bounds__(kThreads)
index_add_rows_kernel(const T* __restrict__ g, const int* __restrict__ pos, const int* __restrict__ begin,
                      const int* __restrict__ end, int64_t O, int64_t N, int64_t K, int64_t I, T* __restrict__ gx) {
  const int64_t row = (int64_t)blockIdx.x * 8 + threadIdx.y;  // (o, n)
  if (row >= O * N) return;
  const int64_t o = row / N, n = row - o * N;
  const int b = begin[n], e = end[n];
  const T* go = g + o * K * I;
  T* dst = gx + row * I;
  for (int64_t i = threadIdx.x; i < I; i += 32) {
    T acc = T(0);
    for (int p = b; p < e; ++p) acc += go[(int64_t)pos[p] * I + i];
    dst[i] = acc;
  }
}

// ---------------------------------------------------------------- gather
// out[p] = x_base[xoff(p) + idx[ioff(p)] * sd]; elements moved as unsigned words of their size.
template <typename U, typename Idx>
__global__ void __launch_bounds__(kThreads)
gather_kernel(Idx n, OffsetCalc<3, Idx> calc, const U* __restrict__ x, int64_t sd, const int64_t* __restrict__ idx,
              U* __restrict__ out) {
  for (Idx i = (Idx)blockIdx.x * kThreads + threadIdx.x; i < n; i += (Idx)gridDim.x * kThreads) {
    Idx off[3];
    calc.get(i, off);
    out[off[0]] = x[(int64_t)off[1] + idx[off[2]] * sd];
  }
}

// ---------------------------------------------------------------- scatter-add
// A thread per column (every coordinate but dim): gx[gxoff + idx[k] * sd] += g[k] for k in order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
scatter_add_kernel(int64_t cols, OffsetCalc<3, int64_t> calc, const T* __restrict__ g, int64_t g_sd,
                   const int64_t* __restrict__ idx, int64_t i_sd, T* __restrict__ gx, int64_t sd, int64_t K) {
  for (int64_t c = (int64_t)blockIdx.x * kThreads + threadIdx.x; c < cols; c += (int64_t)gridDim.x * kThreads) {
    int64_t off[3];  // gx, g, idx
    calc.get(c, off);
    for (int64_t k = 0; k < K; ++k) gx[off[0] + idx[off[2] + k * i_sd] * sd] += g[off[1] + k * g_sd];
  }
}

int bits_for(int64_t max_value) {
  int b = 1;
  while (b < 63 && (int64_t(1) << b) <= max_value) ++b;
  return b;
}

size_t align_up(size_t b) { return (b + 255) & ~size_t(255); }

}  // namespace

// ---------------------------------------------------------------- launchers


void cuda_embedding_forward(DType dtype, const void* weight, int64_t rs, int64_t cs, const int64_t* idx, int64_t L,
                            int64_t D, void* y, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_embedding_forward";
  MG_CHECK(L >= 0 && D >= 0 && rs >= 0 && cs >= 0, name, "L = {}, D = {}, strides ({}, {})", L, D, rs, cs);
  if (L == 0 || D == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    embedding_forward_kernel<T><<<exact_grid(name, (L + 7) / 8), dim3(32, 8), 0, stream>>>(
        static_cast<const T*>(weight), rs, cs, idx, L, D, static_cast<T*>(y));
    check_launch();
  });
}

void cuda_index_add_rows(DType dtype, const void* g, const int64_t* idx, int64_t O, int64_t N, int64_t K, int64_t I,
                         void* gx, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_index_add_rows";
  MG_CHECK(O >= 0 && N >= 0 && K >= 0 && I >= 0, name, "negative extent in (O,N,K,I) = ({},{},{},{})", O, N, K, I);
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  MG_CHECK(N <= kMaxInt && K <= kMaxInt, name, "N = {} and K = {} must fit 32 bits (sort keys)", N, K);
  if (O * N * I == 0) return;
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Workspace: keys in/out, positions in/out (K each), begin/end (N each), then CUB's scratch.
    size_t sort_bytes = 0;
    const int end_bit = bits_for(N - 1);
    if (K > 0)
      MG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (const unsigned*)nullptr, (unsigned*)nullptr,
                                                    (const int*)nullptr, (int*)nullptr, (int)K, 0, end_bit, stream));
    const size_t kb = align_up((size_t)K * sizeof(int)), nb = align_up((size_t)N * sizeof(int));
    Workspace ws(4 * kb + 2 * nb + sort_bytes, stream);
    char* base = ws.as<char>();
    unsigned* keys_in = reinterpret_cast<unsigned*>(base);
    unsigned* keys_out = reinterpret_cast<unsigned*>(base + kb);
    int* pos_in = reinterpret_cast<int*>(base + 2 * kb);
    int* pos_out = reinterpret_cast<int*>(base + 3 * kb);
    int* begin = reinterpret_cast<int*>(base + 4 * kb);
    int* end = reinterpret_cast<int*>(base + 4 * kb + nb);
    void* scratch = base + 4 * kb + 2 * nb;
    MG_CUDA_CHECK(cudaMemsetAsync(begin, 0, 2 * nb, stream));  // begin and end: every group empty
    if (K > 0) {
      make_keys_kernel<<<grid_for(K, kThreads), kThreads, 0, stream>>>(idx, K, keys_in, pos_in);
      check_launch();
      MG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch, sort_bytes, keys_in, keys_out, pos_in, pos_out, (int)K, 0,
                                                    end_bit, stream));
      segment_bounds_kernel<<<grid_for(K, kThreads), kThreads, 0, stream>>>(keys_out, K, begin, end);
      check_launch();
    }
    index_add_rows_kernel<T><<<exact_grid(name, (O * N + 7) / 8), dim3(32, 8), 0, stream>>>(
        static_cast<const T*>(g), pos_out, begin, end, O, N, K, I, static_cast<T*>(gx));
    check_launch();
  });
}

void cuda_gather(DType dtype, const CudaView& x_base, int64_t sd, const CudaView& idx, const CudaView& out,
                 cudaStream_t stream) {
  constexpr std::string_view name = "cuda_gather";
  const CudaView* views[3] = {&out, &x_base, &idx};
  const Layout<3> L = merge_views<3>(name, views);
  if (L.numel == 0) return;
  MG_CHECK(out.data && x_base.data && idx.data, name, "null data pointer");
  MG_CHECK(sd >= 0, name, "negative stride {} along the gathered dim", sd);
  const int64_t* ip = static_cast<const int64_t*>(idx.data);
  auto go = [&](auto tag) {
    using U = typename decltype(tag)::type;
    const U* xp = static_cast<const U*>(x_base.data);
    U* op = static_cast<U*>(out.data);
    if (fits_32bit(L))
      gather_kernel<U, uint32_t><<<grid_for(L.numel, kThreads, 64), kThreads, 0, stream>>>(
          (uint32_t)L.numel, OffsetCalc<3, uint32_t>(L), xp, sd, ip, op);
    else
      gather_kernel<U, int64_t><<<grid_for(L.numel, kThreads, 64), kThreads, 0, stream>>>(
          L.numel, OffsetCalc<3, int64_t>(L), xp, sd, ip, op);
    check_launch();
  };
  switch (dtype_size(dtype)) {
    case 1: return go(Tag<uint8_t>{});
    case 4: return go(Tag<uint32_t>{});
    case 8: return go(Tag<uint64_t>{});
    default: fail(name, "unexpected element size of {}", dtype_name(dtype));
  }
}

void cuda_scatter_add(DType dtype, const CudaView& g, const CudaView& idx, const CudaView& gx_base, int64_t sd,
                      int dim, cudaStream_t stream) {
  constexpr std::string_view name = "cuda_scatter_add";
  MG_CHECK(dim >= 0 && dim < g.ndim, name, "dim {} out of range for {} dims", dim, g.ndim);
  MG_CHECK(sd >= 0, name, "negative stride {} along dim {}", sd, dim);
  // The columns: the three views without `dim`.
  auto drop = [&](const CudaView& v) {
    CudaView c;
    c.data = v.data;
    c.ndim = 0;
    for (int d = 0; d < v.ndim; ++d) {
      if (d == dim) continue;
      c.sizes[c.ndim] = v.sizes[d];
      c.strides[c.ndim] = v.strides[d];
      ++c.ndim;
    }
    return c;
  };
  MG_CHECK(idx.ndim == g.ndim && gx_base.ndim == g.ndim, name, "views of {}, {} and {} dims", g.ndim, idx.ndim,
           gx_base.ndim);
  const CudaView cg = drop(g), ci = drop(idx), cx = drop(gx_base);
  const CudaView* views[3] = {&cx, &cg, &ci};
  const Layout<3> L = merge_views<3>(name, views);
  const int64_t K = g.sizes[dim];
  MG_CHECK(idx.sizes[dim] == K && gx_base.sizes[dim] == K, name, "dim {} has sizes {}, {} and {}", dim, K,
           idx.sizes[dim], gx_base.sizes[dim]);
  if (L.numel == 0 || K == 0) return;
  MG_CHECK(g.data && idx.data && gx_base.data, name, "null data pointer");
  dispatch_float_cu(name, dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_add_kernel<T><<<grid_for(L.numel, kThreads), kThreads, 0, stream>>>(
        L.numel, OffsetCalc<3, int64_t>(L), static_cast<const T*>(g.data), g.strides[dim],
        static_cast<const int64_t*>(idx.data), idx.strides[dim], static_cast<T*>(gx_base.data), sd, K);
    check_launch();
  });
}

void cuda_copy_rows(const void* src, void* dst, int64_t O, int64_t row_bytes, int64_t dst_row_bytes,
                    cudaStream_t stream) {
  constexpr std::string_view name = "cuda_copy_rows";
  MG_CHECK(O >= 0 && row_bytes >= 0 && dst_row_bytes >= row_bytes, name, "O = {}, row_bytes = {}, dst_row_bytes = {}",
           O, row_bytes, dst_row_bytes);
  if (O == 0 || row_bytes == 0) return;
  if (row_bytes == dst_row_bytes)
    MG_CUDA_CHECK(cudaMemcpyAsync(dst, src, (size_t)(O * row_bytes), cudaMemcpyDeviceToDevice, stream));
  else
    MG_CUDA_CHECK(cudaMemcpy2DAsync(dst, (size_t)dst_row_bytes, src, (size_t)row_bytes, (size_t)row_bytes, (size_t)O,
                                    cudaMemcpyDeviceToDevice, stream));
}

}  // namespace megagrad::cuda
