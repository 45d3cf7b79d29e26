// megagrad export: a training checkpoint's weights, without the optimizer state, as a
// weights-only safetensors file (mega/train/weights.h).
#include <cstdio>
#include "cli/commands.h"
#include "mega/train/weights.h"

namespace megagrad::cli {

int cmd_export(const std::vector<std::string>& args) {
  Options opts("export", {threads_option()});
  opts.positionals(2, "CHECKPOINT OUT");
  opts.parse(args);
  if (opts.help()) {
    std::printf(
        "usage: megagrad export CHECKPOINT OUT.safetensors\n\n"
        "Writes the weights of a training checkpoint (the checkpoint.safetensors of megagrad train)\n"
        "without its optimizer state, to OUT.safetensors (atomically: a crash leaves no partial file).\n"
        "Load it with `megagrad eval --weights OUT.safetensors` or `megagrad train --init-from\n"
        "OUT.safetensors`, or from PyTorch with any safetensors reader.\n\n"
        "Tensor names: the model's state_dict names, with no \"model.\" prefix.\n"
        "  Mega models: the official fairseq names (facebookresearch/mega), e.g. the LRA classifier's\n"
        "    encoder.encoder.embed_tokens.embed.weight, encoder.encoder.layers.0.mega_layer.v_proj.weight,\n"
        "    classifier.0.0.weight, sentence_projection_layer.weight; the language model's\n"
        "    decoder.embed_tokens.weight, decoder.layers.0.mega_layer.move.alpha, decoder.output_projection.weight.\n"
        "  Transformer baselines (ours, no official counterpart): the classifier's embed_tokens.weight,\n"
        "    layers.<i>.{attn_norm.norm,qkv,out_proj,ffn_norm.norm,fc1,fc2}.{weight,bias}, final_norm.norm.*,\n"
        "    classifier.0.0.*, sentence_projection_layer.weight; the decoder's decoder.embed_tokens.weight,\n"
        "    decoder.embed_positions.weight (learned positions), decoder.layers.<i>.* (the same block names),\n"
        "    decoder.final_norm.norm.*, decoder.output_projection.weight (untied).\n"
        "Metadata: \"format\" megagrad-weights-1, \"config\" (the run configuration, JSON), \"checksum\"\n"
        "(FNV-1a 64 of the whole file, as in checkpoints), \"step\", \"source\", \"megagrad_version\", and\n"
        "a character LM's \"vocab\" (for `megagrad generate --weights`).\n\n%s",
        opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  if (opts.positional().size() != 2)
    throw UsageError("megagrad export: expects CHECKPOINT and OUT.safetensors (see: megagrad export --help)");
  const std::string& ckpt = opts.positional()[0];
  const std::string& out = opts.positional()[1];
  ExportSummary s = export_weights(ckpt, out);
  std::printf("megagrad export: %zu tensors (%lld values) of the %s %s model%s -> %s\n", s.tensors,
              (long long)s.parameters, s.task.c_str(), s.model_type.c_str(),
              s.step.empty() ? "" : fmt::format(" at step {}", s.step).c_str(), out.c_str());
  return 0;
}

}  // namespace megagrad::cli
