// bench_mega: the fused Mega kernels against their composed references (the same function
// written with primitive autograd ops), in the same run, on one thread: forward (no graph) and
// forward+backward. The references materialise an L x L Toeplitz matrix (EMA) or the C x C
// score matrices (attention), so sizes are moderate.
//
//   build/bench_mega [--quick]
#include <cstdio>
#include <cstring>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "backends/cpu/blas.h"
#include "bench/bench_util.h"
#include "core/parallel.h"
#include "mega/attention/attention.h"
#include "mega/ema/ema.h"
#include "mega/ema/ema_gradcheck.h"
#include "mega/gates/gates.h"

using namespace megagrad;
using namespace megagrad::bench;

namespace {
void row(const char* name, Stats ref, Stats fused) {
  std::printf("%-52s %10.2f %10.2f %8.1fx\n", name, ref.median * 1e3, fused.median * 1e3, ref.median / fused.median);
}

// f(inputs) then backward of sum(out * G).
void fwd_bwd(const std::function<Tensor()>& f, const Tensor& G, std::vector<Tensor*> leaves) {
  for (Tensor* t : leaves) t->zero_grad();
  sum(mul(f(), G)).backward();
}
}  // namespace

int main(int argc, char** argv) {
  fix_openblas_core_or_reexec(argc, argv);
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  set_num_threads(1);
  const int reps = quick ? 2 : 5;
  std::printf("OpenBLAS core: %s; threads: %d (megagrad) / %d (OpenBLAS); medians of %d runs\n\n",
              blas_core_name().c_str(), get_num_threads(), blas_get_num_threads(), reps);
  std::printf("%-52s %10s %10s %9s\n", "float32", "ref ms", "fused ms", "speed-up");

  {  // EMA: bidirectional, D=64, N=16
    const int64_t B = 2, L = quick ? 256 : 1024, D = 64, N = 16;
    EmaParams p = random_ema_params(D, N, true, 1, DType::Float32);
    Generator g(2);
    Tensor x = randn({B, L, D}, DType::Float32, &g).requires_grad_();
    Tensor G = randn({B, L, D}, DType::Float32, &g);
    EmaOptions o{true, {}};
    std::vector<Tensor*> leaves{&x, &p.delta, &p.alpha, &p.beta, &p.gamma, &p.omega};
    char name[128];
    auto [rf, ff] = race(reps, [&] { no_grad ng; ema_reference(x, Tensor(), p, o); },
                         [&] { no_grad ng; ema(x, Tensor(), p, o); });
    std::snprintf(name, sizeof name, "EMA forward (B=%lld L=%lld D=%lld N=%lld, bidir)", (long long)B, (long long)L,
                  (long long)D, (long long)N);
    row(name, rf, ff);
    auto [rb, fb] = race(reps, [&] { fwd_bwd([&] { return ema_reference(x, Tensor(), p, o); }, G, leaves); },
                         [&] { fwd_bwd([&] { return ema(x, Tensor(), p, o); }, G, leaves); });
    std::snprintf(name, sizeof name, "EMA forward+backward");
    row(name, rb, fb);
  }
  for (auto act : {AttentionActivation::Softmax, AttentionActivation::Laplace}) {
    const int64_t B = 2, L = quick ? 256 : 1024, Z = 64, H = 128, C = quick ? 128 : 256;
    Generator g(3);
    Tensor q = randn({B, L, Z}, DType::Float32, &g).requires_grad_();
    Tensor k = randn({B, L, Z}, DType::Float32, &g).requires_grad_();
    Tensor v = randn({B, L, H}, DType::Float32, &g).requires_grad_();
    Tensor G = randn({B, L, H}, DType::Float32, &g);
    RelPosBias bias;
    bias.weight = normal({2 * C - 1}, 0, 0.02, DType::Float32, &g).requires_grad_();
    AttentionOptions o;
    o.activation = act, o.chunk_size = C;
    std::vector<Tensor*> leaves{&q, &k, &v, &bias.weight};
    const char* an = attention_activation_name(act);
    char name[128];
    auto [rf, ff] = race(reps, [&] { no_grad ng; attention_reference(q, k, v, Tensor(), bias, o); },
                         [&] { no_grad ng; attention(q, k, v, Tensor(), bias, o); });
    std::snprintf(name, sizeof name, "attention %s forward (B=%lld L=%lld C=%lld Z=%lld H=%lld)", an, (long long)B,
                  (long long)L, (long long)C, (long long)Z, (long long)H);
    row(name, rf, ff);
    auto [rb, fb] = race(reps, [&] { fwd_bwd([&] { return attention_reference(q, k, v, Tensor(), bias, o); }, G, leaves); },
                         [&] { fwd_bwd([&] { return attention(q, k, v, Tensor(), bias, o); }, G, leaves); });
    std::snprintf(name, sizeof name, "attention %s forward+backward", an);
    row(name, rb, fb);
  }
  {  // the gate chains of MovingAverageGatedAttention at the small-model size (bench/configs/S.json)
    const int64_t B = 32, L = 100, D = 64, Z = 32, H = 128;
    Generator g(5);
    Tensor base = randn({B, L, D + Z + H + D}, DType::Float32, &g).requires_grad_();
    Tensor gamma = randn({2, Z}, DType::Float32, &g).requires_grad_(), beta = randn({2, Z}, DType::Float32, &g).requires_grad_();
    Tensor hp = randn({B, L, D}, DType::Float32, &g).requires_grad_(), res = randn({B, L, D}, DType::Float32, &g).requires_grad_();
    Tensor Gr = randn({B, L, H}, DType::Float32, &g), Gq = randn({B, L, Z}, DType::Float32, &g),
           Go = randn({B, L, D}, DType::Float32, &g);
    std::vector<Tensor*> leaves{&base, &gamma, &beta, &hp, &res};
    // both gates as the layer chains them: u into the output gate, r, q, k into a stand-in loss
    auto chain = [&](bool fused) {
      Tensor x = base.narrow(2, 0, D + Z + H), hx = base.narrow(2, D + Z + H, D);
      InputGates ig = fused ? input_gates(x, gamma, beta, D) : input_gates_reference(x, gamma, beta, D);
      Tensor out = fused ? output_gate(hx, hp, ig.u, res) : output_gate_reference(hx, hp, ig.u, res);
      return add(add(sum(mul(out, Go)), sum(mul(ig.r, Gr))), add(sum(mul(ig.q, Gq)), sum(mul(ig.k, Gq))));
    };
    auto [rf, ff] = race(reps, [&] { no_grad ng; chain(false); }, [&] { no_grad ng; chain(true); });
    row("gates forward (B=32 L=100 D=64 Z=32 H=128)", rf, ff);
    auto run = [&](bool fused) {
      for (Tensor* t : leaves) t->zero_grad();
      chain(fused).backward();
    };
    auto [rb, fb] = race(reps, [&] { run(false); }, [&] { run(true); });
    row("gates forward+backward", rb, fb);
  }
  return 0;
}
