// megagrad's public API in one include: #include <megagrad/megagrad.h>
//
// This folder exists so that the in-tree build (whose include path is the repository root) and an
// installed package (<prefix>/include, where the library's headers live under megagrad/) spell
// the include the same way. The install step rewrites the library's includes ("core/tensor.h")
// to the prefixed form ("megagrad/core/tensor.h") in the installed copies only; the source tree
// keeps its folders.
#pragma once

// Tensors, their storage and random numbers; the threads, and the OpenBLAS kernel check
// (fix_openblas_core_or_reexec, called first thing in main, as the megagrad program does).
#include "backends/cpu/blas.h"
#include "core/build_info.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/tensor.h"

// Autograd: the differentiable ops, grad mode, gradient checks and graph dumps; recorded nodes,
// record() and the op registry, for ops of your own (examples/autodiff_tour.cpp).
#include "autograd/dump_graph.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "autograd/registry.h"

// Modules, Mega layers and models, optimizers and LR schedules.
#include "mega/config.h"
#include "mega/layers.h"
#include "mega/lr_schedule.h"
#include "mega/models.h"
#include "mega/module.h"
#include "mega/optim.h"
#include "mega/seq2seq.h"  // encoder-decoder models (and mega/decoder_layer.h)

// Weights in and out: safetensors files and training checkpoints.
#include "core/safetensors.h"
#include "mega/train/checkpoint.h"

// Training: the loop and its tasks.
#include "mega/train/tasks.h"
#include "mega/train/trainer.h"
