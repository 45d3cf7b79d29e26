// Fuzz target: the dataset readers of mega/data/.
//
// Input: one selector byte, then the payload. selector % 6 picks the reader:
//   0 ListOps TSV (LRA format): parse_listops_tsv, with and without label verification;
//   1 IDX in memory: parse_idx;
//   2 gzip: gunzip (zlib's inflate) of the payload, with the default and with a small output
//     limit, and of the payload gzip-compressed here (zlib's deflate: mutations rarely keep a
//     valid CRC, so this is the way to reach the end of a member and what follows it);
//   3 IDX file, plain or gzip: read_idx on a scratch file (the path Fashion-MNIST takes); with
//     selector bit 3 set (selector 9, 21, ...) the payload is gzip-compressed first, so that the
//     IDX validator runs on zlib's output for any payload;
//   4 text corpus: make_text_data (selector bits 3-7 pick the validation fraction and the
//     vocabulary), then the evaluation and training windows over it;
//   5 an IDX images file and an IDX labels file: load_idx_images, the payload split in two at the
//     offset given by its first two bytes.
// Checks: every reader returns or throws megagrad::Error, and what it accepts is consistent:
//   ListOps: listops_to_tsv of an accepted file parses back to the same dataset, every label is
//            the expression's value (when verified) and every example decodes/encodes back;
//   IDX:     prod(dims) == data bytes; read_idx agrees with gunzip + parse_idx;
//   gzip:    a small output limit gives the same bytes or an error, never a different result;
//            compressed here, the payload comes back exactly (limit = its size) or is refused
//            (limit = its size - 1);
//   text:    decoding the encoded splits gives the text back, the vocabulary survives to_json /
//            from_json, and the windows stay inside the splits;
//   images:  counts agree and every label is below 10.
// Anything else (another exception type, a sanitizer report, a mismatch, a huge allocation from
// a size field, a hang) is a bug.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>
#include <zlib.h>
#include "core/rng.h"
#include "mega/data/batch.h"
#include "mega/data/gzip.h"
#include "mega/data/idx.h"
#include "mega/data/listops.h"
#include "mega/data/text.h"
#include "tests/fuzz/fuzz_util.h"

using namespace megagrad;
using namespace megagrad::data;

namespace {

bool same(const SequenceDataset& a, const SequenceDataset& b) {
  return a.tokens == b.tokens && a.offsets == b.offsets && a.labels == b.labels;
}

void check_idx(const IdxArray& a, const char* what) {
  uint64_t n = 1;
  for (int64_t d : a.dims) n *= (uint64_t)d;
  if (a.dims.empty() || n != a.data.size()) fuzz::bug("%s: the dims do not match %zu data bytes", what, a.data.size());
}

void listops(std::string_view text) {
  for (bool verify : {true, false}) {
    std::optional<SequenceDataset> ds;
    fuzz::accepts("parse_listops_tsv", [&] { ds = parse_listops_tsv(text, "fuzz input", verify); });
    if (!ds) continue;
    if ((int64_t)ds->offsets.size() != ds->size() + 1 || ds->offsets.back() != (int64_t)ds->tokens.size())
      fuzz::bug("parse_listops_tsv: inconsistent offsets");
    for (int64_t i = 0; i < ds->size(); ++i) {
      int value = -1;
      std::vector<uint8_t> again;
      if (!fuzz::accepts("listops_evaluate", [&] {
            value = listops_evaluate(ds->sequence(i));
            again = listops_encode(listops_decode(ds->sequence(i)));
          }))
        fuzz::bug("example %lld of an accepted file does not evaluate or decode", (long long)i);
      if (value < 0 || value > 9 || ds->labels[i] < 0 || ds->labels[i] > 9) fuzz::bug("a value or label is not 0-9");
      if (verify && value != ds->labels[i]) fuzz::bug("a verified label differs from its expression's value");
      if (!std::equal(again.begin(), again.end(), ds->sequence(i).begin(), ds->sequence(i).end()))
        fuzz::bug("listops_encode(listops_decode(x)) != x");
    }
    std::optional<SequenceDataset> back;
    if (!fuzz::accepts("parse_listops_tsv (rewritten)",
                       [&] { back = parse_listops_tsv(listops_to_tsv(*ds), "rewritten", verify); }))
      fuzz::bug("parse_listops_tsv rejects what listops_to_tsv wrote");
    if (!same(*ds, *back)) fuzz::bug("listops_to_tsv does not round-trip");
    if (ds->size() > 0) {
      std::vector<int64_t> idx(std::min<int64_t>(ds->size(), 8));
      std::iota(idx.begin(), idx.end(), 0);
      if (!fuzz::accepts("make_batch", [&] { (void)make_batch(*ds, idx); }))
        fuzz::bug("make_batch rejects examples of an accepted file");
    }
  }
}

void idx_in_memory(std::string_view bytes) {
  std::optional<IdxArray> a;
  fuzz::accepts("parse_idx", [&] { a = parse_idx(bytes, "fuzz input"); });
  if (a) check_idx(*a, "parse_idx");
}

// The payload as a gzip file, by zlib (level from the selector: 0 gives stored blocks).
std::string gzip_compress(std::string_view bytes, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) fuzz::bug("deflateInit2 failed");
  std::string out(deflateBound(&zs, (uLong)bytes.size()), '\0');
  zs.next_in = (Bytef*)bytes.data(), zs.avail_in = (uInt)bytes.size();
  zs.next_out = (Bytef*)out.data(), zs.avail_out = (uInt)out.size();
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) fuzz::bug("deflate did not finish within deflateBound");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void gzip(std::string_view bytes, uint8_t selector) {
  std::optional<std::string> out;
  fuzz::accepts("gunzip", [&] { out = gunzip(bytes, "fuzz input"); });
  // The output limit is a guard, never a different answer: the same bytes or an error.
  const size_t limit = 1000;
  std::optional<std::string> small;
  fuzz::accepts("gunzip (limited)", [&] { small = gunzip(bytes, "fuzz input", limit); });
  if (small && (!out || *small != *out)) fuzz::bug("gunzip with an output limit returns something else");
  if (out && out->size() <= limit && !small) fuzz::bug("gunzip with a limit rejects an output within the limit");
  if (!is_gzip(bytes) && out) fuzz::bug("gunzip accepts data without the gzip magic");
  // Through zlib both ways: two members (the second empty when the payload is odd-sized).
  const int level = (selector >> 3) % 10;
  const size_t half = bytes.size() % 2 ? bytes.size() : bytes.size() / 2;
  const std::string first = gzip_compress(bytes.substr(0, half), level);
  const std::string gz = first + gzip_compress(bytes.substr(half), level);
  std::optional<std::string> back;
  if (!fuzz::accepts("gunzip (compressed here)", [&] { back = gunzip(gz, "compressed", bytes.size()); }) ||
      *back != bytes)
    fuzz::bug("gunzip does not give back what zlib compressed");
  if (!bytes.empty() && fuzz::accepts("gunzip (one byte short)", [&] { (void)gunzip(gz, "compressed", bytes.size() - 1); }))
    fuzz::bug("gunzip returns more bytes than its limit");
  // Cut inside the second member, inside the first, and 10 bytes into the second (its header).
  for (size_t cut : {gz.size() - 1, first.size() - 1, first.size() + 10})
    if (fuzz::accepts("gunzip (cut)", [&] { (void)gunzip(std::string_view(gz).substr(0, cut), "cut"); }))
      fuzz::bug("gunzip accepts a file cut to %zu of %zu bytes", cut, gz.size());
}

void idx_file(std::string_view payload, uint8_t selector) {
  const std::string compressed = selector & 8 ? gzip_compress(payload, 6) : std::string();
  const std::string_view bytes = selector & 8 ? std::string_view(compressed) : payload;
  std::string path = fuzz::write_scratch("idx", bytes);
  std::optional<IdxArray> a;
  fuzz::accepts("read_idx", [&] { a = read_idx(path); });
  // The reference: the same steps, in memory.
  std::optional<IdxArray> b;
  fuzz::accepts("gunzip + parse_idx", [&] {
    std::string plain = is_gzip(bytes) ? gunzip(bytes, "fuzz input") : std::string(bytes);
    b = parse_idx(plain, "fuzz input");
  });
  if (a.has_value() != b.has_value()) fuzz::bug("read_idx and gunzip + parse_idx disagree on acceptance");
  if ((selector & 8) && a.has_value() != fuzz::accepts("parse_idx", [&] { (void)parse_idx(payload, "plain"); }))
    fuzz::bug("read_idx of the compressed payload and parse_idx of the plain one disagree");
  if (a) {
    check_idx(*a, "read_idx");
    if (a->dims != b->dims || a->data != b->data) fuzz::bug("read_idx and gunzip + parse_idx read different arrays");
  }
}

void text(std::string_view bytes, uint8_t selector) {
  const double fractions[4] = {0.05, 0.0, 0.5, 0.999};
  const double val_fraction = fractions[(selector >> 3) & 3];
  const bool byte_vocab = selector & 32;
  std::optional<TextData> d;
  fuzz::accepts("make_text_data", [&] { d = make_text_data(bytes, val_fraction, byte_vocab, "fuzz input"); });
  if (!d) return;
  std::vector<int64_t> all = d->train;
  all.insert(all.end(), d->val.begin(), d->val.end());
  std::string decoded;
  if (!fuzz::accepts("CharVocab::decode", [&] { decoded = d->vocab.decode(all); }) || decoded != bytes)
    fuzz::bug("decoding the encoded text does not give it back");
  CharVocab v2;
  if (!fuzz::accepts("CharVocab::from_json", [&] { v2 = CharVocab::from_json(d->vocab.to_json()); }) ||
      v2.to_json().dump() != d->vocab.to_json().dump())
    fuzz::bug("the vocabulary does not survive to_json / from_json");
  const int64_t T = 1 + (selector >> 6);  // 1..4
  for (const std::vector<int64_t>* split : {&d->train, &d->val}) {
    int64_t n = num_eval_windows(*split, T);
    if (n > 0 && !fuzz::accepts("eval_windows", [&] { (void)eval_windows(*split, T, n - 1, 1); }))
      fuzz::bug("eval_windows rejects its last window");
    Generator gen(3);
    bool fits = (int64_t)split->size() >= T + 1;
    if (fuzz::accepts("sample_windows", [&] { (void)sample_windows(*split, 2, T, gen); }) != fits)
      fuzz::bug("sample_windows: acceptance does not follow the split's length");
  }
}

void images(std::string_view payload) {
  if (payload.size() < 2) return;
  size_t cut = std::min<size_t>((uint8_t)payload[0] | (size_t)(uint8_t)payload[1] << 8, payload.size() - 2);
  std::string_view rest = payload.substr(2);
  std::string ip = fuzz::write_scratch("images", rest.substr(0, cut));
  std::string lp = fuzz::write_scratch("labels", rest.substr(cut));
  std::optional<ImageSet> s;
  fuzz::accepts("load_idx_images", [&] { s = load_idx_images(ip, lp); });
  if (!s) return;
  if ((int64_t)s->labels.size() != s->count || (int64_t)s->pixels.size() != s->count * s->pixels_per_image())
    fuzz::bug("load_idx_images: inconsistent counts");
  for (uint8_t l : s->labels)
    if (l >= 10) fuzz::bug("load_idx_images: label %d is not below 10", l);
  if (s->count > 0) {
    std::vector<int64_t> idx = {0, s->count - 1};
    if (!fuzz::accepts("image_tokens", [&] { (void)image_tokens(*s, idx), (void)image_labels(*s, idx); }))
      fuzz::bug("image_tokens rejects images of an accepted file");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (selector % 6) {
    case 0: listops(payload); break;
    case 1: idx_in_memory(payload); break;
    case 2: gzip(payload, selector); break;
    case 3: idx_file(payload, selector); break;
    case 4: text(payload, selector); break;
    case 5: images(payload); break;
  }
  return 0;
}
