#!/usr/bin/env bash
# Installs what megagrad needs from Debian's packages, only when something is missing.
# Runs as root, or through sudo when it is there.
set -euo pipefail
# Build: compiler, CMake, OpenBLAS, fmt, Catch2, and zlib (zlib1g-dev: gunzip of the Fashion-MNIST
# .gz files; the well-kept parser of untrusted compressed input). Data for the default training tasks:
# Fashion-MNIST (dataset-fashion-mnist) and the King James Bible corpus (bible-kjv). The fuzz
# targets of the file readers (make fuzz): clang and its runtime libraries (libFuzzer, sanitizers).
# The experiments' summaries and plots (experiments/*.py, standard library only): python3.
# Communication between processes (backends/dist/, optional at build time): Open MPI.
# The install test (tests/install/) compiles a program with `pkg-config --cflags --libs megagrad`: pkgconf
# (CMake also finds SentencePiece and libsword with it).
# Translation (optional at build time): SentencePiece, the subword tokenizer (libsentencepiece-dev);
# libsword and the two public-domain Bibles whose verses make the Spanish->English parallel corpus
# (libsword-dev, sword-text-sparv: Reina-Valera 1909, sword-text-kjv: King James).
packages=(build-essential cmake make libopenblas-dev libfmt-dev catch2 zlib1g-dev dataset-fashion-mnist bible-kjv
          clang libclang-rt-dev python3 libopenmpi-dev openmpi-bin pkgconf
          libsentencepiece-dev libsword-dev sword-text-sparv sword-text-kjv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "megagrad: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "megagrad: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
