#include "mega/train/data_parallel.h"
#include <exception>
#include <map>
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "mega/train/trainer.h"

namespace megagrad {

// ---------------------------------------------------------------- GradientSync

GradientSync::GradientSync(const NamedTensors& params, dist::Communicator& comm, int64_t bucket_bytes) : comm_(comm) {
  MG_CHECK(bucket_bytes >= 1, "GradientSync", "bucket_bytes must be >= 1, got {}", bucket_bytes);
  for (const auto& [name, p] : params)
    if (p.requires_grad()) params_.push_back(p);
  bucket_of_.assign(params_.size(), 0);
  seen_.assign(params_.size(), 0);
  // Reverse order, one open bucket per (dtype, device): a bucket holds one kind of tensor.
  std::map<std::pair<int, std::string>, size_t> open;
  for (size_t i = params_.size(); i-- > 0;) {
    const Tensor& p = params_[i];
    const auto key = std::make_pair((int)p.dtype(), fmt::format("{}", p.device()));
    auto it = open.find(key);
    const int64_t esize = (int64_t)dtype_size(p.dtype());
    if (it == open.end() || (buckets_[it->second].numel + p.numel()) * esize > bucket_bytes) {
      buckets_.emplace_back();
      it = open.insert_or_assign(key, buckets_.size() - 1).first;
    }
    Bucket& b = buckets_[it->second];
    b.params.push_back(i), b.offsets.push_back(b.numel), b.numel += p.numel();
    bucket_of_[i] = it->second;
  }
  for (Bucket& b : buckets_) {
    const Tensor& p = params_[b.params[0]];
    b.flat = Tensor::zeros({b.numel + (int64_t)b.params.size()}, p.dtype(), p.device());
  }
  for (size_t i = 0; i < params_.size(); ++i)
    params_[i].set_post_accumulate_grad_hook([this, i](const Tensor&) { on_gradient(i); });
}

GradientSync::~GradientSync() {
  for (Tensor& p : params_) p.set_post_accumulate_grad_hook(nullptr);
  for (Bucket& b : buckets_) b.pending.reset();  // waits
}

void GradientSync::arm() {
  MG_CHECK(!armed_, "GradientSync", "arm() twice without finish()");
  armed_ = true;
}

void GradientSync::on_gradient(size_t i) {
  if (!armed_ || seen_[i]) return;
  seen_[i] = 1;
  ++buckets_[bucket_of_[i]].ready;
  start_ready_buckets();
}

void GradientSync::start_ready_buckets() {
  while (next_ < buckets_.size() && buckets_[next_].ready == buckets_[next_].params.size()) start(buckets_[next_++]);
  // MPI moves a non-blocking collective on only inside MPI calls: give the started ones a turn.
  for (size_t k = 0; k < next_; ++k)
    if (buckets_[k].pending) buckets_[k].pending->test();
}

void GradientSync::start(Bucket& b) {
  no_grad guard;
  // The gradients, then one "has a gradient" flag per parameter (a gradient that never came is
  // zero here; the flags' sum says whether any rank had one).
  std::vector<double> flags(b.params.size(), 0.0);
  for (size_t j = 0; j < b.params.size(); ++j) {
    const Tensor& p = params_[b.params[j]];
    Tensor slot = b.flat.narrow(0, b.offsets[j], p.numel());
    if (Tensor g = p.grad(); g.defined()) {
      slot.copy_(g.reshape({p.numel()}));
      flags[j] = 1;
    } else {
      slot.zero_();
    }
  }
  b.flat.narrow(0, b.numel, (int64_t)flags.size())
      .copy_(Tensor::from_vector(flags, {(int64_t)flags.size()}, b.flat.dtype()).to(b.flat.device()));
  b.started = true;
  if (comm_.reduces_on(b.flat.device())) {
    b.pending = comm_.start_all_reduce_sum(b.flat);
  } else {  // e.g. MPI without a GPU-aware path: through the host
    b.staged = b.flat.cpu();
    b.pending = comm_.start_all_reduce_sum(b.staged);
  }
}

void GradientSync::finish() {
  MG_CHECK(armed_, "GradientSync", "finish() without arm()");
  no_grad guard;
  while (next_ < buckets_.size()) start(buckets_[next_++]);
  for (Bucket& b : buckets_) {
    b.pending->wait();
    b.pending.reset();
    if (b.staged.defined()) b.flat.copy_(b.staged.to(b.flat.device())), b.staged = Tensor();
    const std::vector<double> flags = b.flat.narrow(0, b.numel, (int64_t)b.params.size()).to_vector();
    for (size_t j = 0; j < b.params.size(); ++j) {
      Tensor& p = params_[b.params[j]];
      if (flags[j] == 0) continue;  // no rank had a gradient
      Tensor sum = b.flat.narrow(0, b.offsets[j], p.numel()).reshape(p.shape());
      if (Tensor g = p.grad(); g.defined() && g.is_contiguous()) g.copy_(sum);
      else p.set_grad(sum.clone());
    }
    b.ready = 0, b.started = false;
  }
  std::fill(seen_.begin(), seen_.end(), 0);
  next_ = 0, armed_ = false;
}

// ---------------------------------------------------------------- the rest

std::string run_on_root(dist::Communicator& comm, const std::function<std::string()>& fn) {
  if (comm.size() == 1) return fn();
  std::string message;  // "ok " + the result, or the error's kind and text
  std::exception_ptr error;
  if (comm.rank() == 0) {
    try {
      message = "ok " + fn();
    } catch (const RunExistsError& e) {
      message = std::string("run ") + e.what(), error = std::current_exception();
    } catch (const std::exception& e) {
      message = std::string("err ") + e.what(), error = std::current_exception();
    }
  }
  comm.broadcast_bytes(message, 0);
  if (error) std::rethrow_exception(error);
  const std::string kind = message.substr(0, 3), text = message.substr(std::min<size_t>(4, message.size()));
  if (kind == "ok ") return text;
  if (kind == "run") throw RunExistsError(text);
  throw Error(text);
}

void broadcast_from_root(dist::Communicator& comm, const NamedTensors& tensors) {
  if (comm.size() == 1) return;
  no_grad guard;
  for (const auto& [name, t] : tensors) {
    if (comm.reduces_on(t.device()) && t.is_contiguous()) {
      Tensor view = t;
      comm.broadcast(view, 0);
    } else {
      Tensor staged = t.contiguous().cpu().clone();
      comm.broadcast(staged, 0);
      Tensor(t).copy_(staged.to(t.device()));
    }
  }
}

uint64_t replicas_hash(const NamedTensors& tensors) {
  uint64_t h = fnv1a("replicas");
  for (const auto& [name, t] : tensors) {
    h = fnv1a(name, h);
    const Tensor c = t.contiguous().cpu();
    h = fnv1a(std::string_view(static_cast<const char*>(c.raw_device_data()), (size_t)c.numel() * dtype_size(c.dtype())), h);
  }
  return h;
}

// ---------------------------------------------------------------- TrainTask's share of a batch

uint64_t TrainTask::data_fingerprint() const { return fnv1a(describe()); }

TrainTask::Share TrainTask::share_of(int64_t n) const {
  if (!comm_ || comm_->size() == 1) return {0, n, n};
  const int64_t r = comm_->rank(), N = comm_->size();
  const int64_t first = n * r / N, end = n * (r + 1) / N;
  return {first, end - first, n};
}

Tensor TrainTask::share_of_mean(const Tensor& loss, const Share& share) {
  return share.whole() ? loss : mul_scalar(loss, share.fraction());
}

void TrainTask::sum_over_ranks(std::vector<double>& values) const {
  if (!comm_ || comm_->size() == 1 || values.empty()) return;
  Tensor t = Tensor::from_vector(values, {(int64_t)values.size()}, DType::Float64);
  comm_->all_reduce_sum(t);
  values = t.to_vector();
}

}  // namespace megagrad
