#!/usr/bin/env bash
# ctest install_downstream: megagrad as a user gets it. Installs the existing build tree to a
# temporary prefix (no rebuild), then:
#   - the installed layout: headers only under include/megagrad/, every quoted include resolvable
#     there and none of the unprefixed top-level folders (core/, autograd/, backends/, mega/);
#   - a separate CMake project (tests/install/downstream: find_package + megagrad::megagrad)
#     configures, builds and runs, without -march flags of megagrad's;
#   - version requests: a compatible one is found, older and newer ones get CMake's version error;
#   - a one-file program compiled with `pkg-config --cflags --libs megagrad` runs;
#   - a parent project that uses add_subdirectory keeps its CMAKE_BUILD_TYPE and BUILD_TESTING.
# Usage: check_install.sh CMAKE BUILD_DIR CXX VERSION
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 CMAKE BUILD_DIR CXX VERSION" >&2
  exit 2
fi
CMAKE=$1 BUILD=$2 CXX=$3 VERSION=$4
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
unset CMAKE_BUILD_TYPE CMAKE_PREFIX_PATH PKG_CONFIG_PATH  # the environment must not decide the checks
TMP=$(mktemp -d "${TMPDIR:-/tmp}/megagrad-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix
fail() { echo "install downstream: FAILED: $*" >&2; exit 1; }
run_logged() {  # run_logged LOG CMD...: quiet on success, the log on failure
  local log=$1; shift
  local rc=0
  "$@" > "$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { cat "$log" >&2; fail "$* (exit $rc)"; }
}

# ---- install ----
run_logged "$TMP/install.log" "$CMAKE" --install "$BUILD" --prefix "$PREFIX"
inc=$PREFIX/include
[ -f "$inc/megagrad/megagrad.h" ] || fail "no umbrella header include/megagrad/megagrad.h"
[ -f "$inc/megagrad/core/tensor.h" ] || fail "no include/megagrad/core/tensor.h"
for top in core autograd backends mega; do
  [ ! -e "$inc/$top" ] || fail "include/$top/ installed at the top level: it would clash with users' own folders"
done
[ -x "$PREFIX/bin/megagrad" ] || fail "no bin/megagrad"
"$PREFIX/bin/megagrad" info > "$TMP/info.txt" 2>&1 || { cat "$TMP/info.txt" >&2; fail "bin/megagrad info"; }
grep -q "^build target" "$TMP/info.txt" || fail "megagrad info shows no 'build target' line"
pcfile=$(find "$PREFIX" -name megagrad.pc | head -n 1)
config=$(find "$PREFIX" -name megagradConfig.cmake | head -n 1)
[ -n "$pcfile" ] || fail "no megagrad.pc installed"
[ -n "$config" ] || fail "no megagradConfig.cmake installed"
for f in megagradConfigVersion.cmake megagradTargets.cmake; do
  [ -f "$(dirname "$config")/$f" ] || fail "no $f next to megagradConfig.cmake"
done
find "$PREFIX" -name libmegagrad.a | grep -q . || fail "no libmegagrad.a installed"

# Every quoted include of an installed header resolves in the installed tree (from the header's
# folder or from include/), and none names an unprefixed top-level folder.
bad=0 nheaders=0
while IFS= read -r -d '' h; do
  nheaders=$((nheaders + 1))
  while IFS= read -r name; do
    case "$name" in core/* | autograd/* | backends/* | mega/*)
      echo "  $h: #include \"$name\" (unprefixed)" >&2; bad=1; continue ;;
    esac
    [ -f "$(dirname "$h")/$name" ] || [ -f "$inc/$name" ] || { echo "  $h: #include \"$name\" not found" >&2; bad=1; }
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$h")
done < <(find "$inc" -type f \( -name '*.h' -o -name '*.cuh' \) -print0)
[ "$bad" -eq 0 ] || fail "installed headers with includes that do not resolve (above)"
[ "$nheaders" -gt 50 ] || fail "only $nheaders headers installed"
echo "install downstream: layout ok ($nheaders headers under include/megagrad/)"

# ---- find_package(megagrad) from a separate project ----
down=$TMP/downstream
run_logged "$TMP/down-configure.log" "$CMAKE" -S "$HERE/downstream" -B "$down" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
run_logged "$TMP/down-build.log" "$CMAKE" --build "$down"
if grep -q -- "-march=" "$down/compile_commands.json"; then
  grep -- "-march=" "$down/compile_commands.json" >&2
  fail "the downstream compile got a -march flag from megagrad::megagrad"
fi
"$down/app" > "$TMP/app.txt" 2>&1 || { cat "$TMP/app.txt" >&2; fail "downstream app"; }
grep -q "^downstream: ok" "$TMP/app.txt" || { cat "$TMP/app.txt" >&2; fail "downstream app printed no 'ok'"; }
cat "$TMP/app.txt"

# ---- version requests (SameMinorVersion) ----
IFS=. read -r major minor _ <<< "$VERSION"
run_logged "$TMP/version-ok.log" "$CMAKE" -S "$HERE/downstream" -B "$down" -DMEGAGRAD_REQUEST_VERSION="$major.$minor"
incompatible=("$major.$((minor + 1))" "$((major + 1)).0")
[ "$minor" -gt 0 ] && incompatible+=("$major.$((minor - 1))")
for v in "${incompatible[@]}"; do
  if "$CMAKE" -S "$HERE/downstream" -B "$down" -DMEGAGRAD_REQUEST_VERSION="$v" > "$TMP/version-$v.log" 2>&1; then
    fail "find_package(megagrad $v) succeeded against megagrad $VERSION"
  fi
  # CMake's own message, e.g. 'compatible with requested version "0.2"' and the version it saw.
  tr '\n' ' ' < "$TMP/version-$v.log" | grep -q "compatible with requested version \"$v\".*version: $VERSION" \
    || { cat "$TMP/version-$v.log" >&2; fail "find_package(megagrad $v): not CMake's version error"; }
done
echo "install downstream: version $major.$minor found; ${incompatible[*]} refused with CMake's version error"

# ---- pkg-config ----
command -v pkg-config > /dev/null || fail "pkg-config not found (Debian: pkgconf; .ci/install-deps.sh installs it)"
flags=$(PKG_CONFIG_PATH=$(dirname "$pcfile") pkg-config --cflags --libs megagrad) || fail "pkg-config --cflags --libs megagrad"
case " $flags " in *" -I$inc/megagrad "* | *-march=*) fail "pkg-config flags expose include/megagrad or a -march flag: $flags" ;; esac
# shellcheck disable=SC2086  # the flags are words
run_logged "$TMP/pc-build.log" "$CXX" -std=c++20 -O1 "$HERE/pkgconfig_main.cpp" -I"$HERE/decoy" $flags -o "$TMP/pc_app"
"$TMP/pc_app" || fail "the pkg-config program"

# ---- add_subdirectory: the parent's settings stay its own (configure only) ----
# MEGAGRAD_NATIVE=ON on purpose: megagrad's own objects get -march=native, the parent's never.
run_logged "$TMP/subdir.log" "$CMAKE" -S "$HERE/subdir" -B "$TMP/subdir" -DMEGAGRAD_SOURCE_DIR="$SRC" \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DMEGAGRAD_CUDA=OFF -DMEGAGRAD_MPI=OFF -DMEGAGRAD_NATIVE=ON
grep -q "subdir consumer: settings kept" "$TMP/subdir.log" || { cat "$TMP/subdir.log" >&2; fail "subdir consumer"; }
python3 - "$TMP/subdir/compile_commands.json" <<'PY' || fail "add_subdirectory: -march=native on the wrong targets (above)"
import json, sys
cmds = json.load(open(sys.argv[1]))
app = [c for c in cmds if c["file"].endswith("downstream/main.cpp")]
lib = [c for c in cmds if "/core/tensor.cpp" in c["file"]]
ok = len(app) == 1 and len(lib) == 1
if ok and "-march=native" in app[0]["command"]:
    print("the parent's app is compiled with -march=native:", app[0]["command"], file=sys.stderr); ok = False
if ok and "-march=native" not in lib[0]["command"]:
    print("megagrad's own objects lack -march=native with MEGAGRAD_NATIVE=ON:", lib[0]["command"], file=sys.stderr); ok = False
sys.exit(0 if ok else 1)
PY
echo "install downstream: add_subdirectory keeps the parent's CMAKE_BUILD_TYPE and BUILD_TESTING; -march=native stays in megagrad"
echo "install downstream: all checks passed"
