// The CPU block cache (the CPU backend's allocator: backends/cpu/backend_cpu.cpp). Blocks of
// 64 KiB and more are kept when their Storage dies and handed out again for the same rounded
// size. A fresh large block pays a page fault per 4 KiB page on first touch, which costs more
// than a memory-bound op itself; a training step allocates the same sizes every time. At most
// MEGAGRAD_CPU_CACHE_MB (default 2048) MiB are kept. Blocks of 2 MiB and more are 2 MiB-aligned
// and marked for transparent huge pages (fewer TLB misses when an op streams through them). The
// CUDA counterpart: backends/cuda/allocator.h.
#pragma once
#include <cstddef>

namespace megagrad {

// Bytes held in free cached blocks.
size_t cpu_cache_bytes();
// Frees every cached block (blocks in use stay).
void empty_cpu_cache();

}  // namespace megagrad
