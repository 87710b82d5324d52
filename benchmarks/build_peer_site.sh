#!/usr/bin/env bash
# Build .peer-site/ and .peer-site.tar.xz: Unsloth and the packages it imports on the QLoRA training path that
# the GPU machine lacks (Python 3.12, torch 2.11 + CUDA 13, transformers 5.17, accelerate, peft, triton,
# pyarrow, pandas, xxhash, huggingface_hub are there), for benchmarks/peer_unsloth.py. Unsloth wants trl <= 1.15
# and datasets < 5, so it gets its own site: never put .devsite (trl 1.16) on the same PYTHONPATH.
#
# Usage (from the project root, on a machine with PyPI):  benchmarks/build_peer_site.sh
# Then a device run carries the archive (the unpacked folder and .devsite together pass the 64 MiB limit):
#   carry [".devsite", ".peer-site.tar.xz", ...] and, in the command,
#   mkdir -p /tmp/peer-site && tar -xJf .peer-site.tar.xz -C /tmp/peer-site
#   PYTHONPATH=/tmp/peer-site python3 benchmarks/peer_unsloth.py ...
#
# What Unsloth imports there was read off its source and checked by importing it with only these packages and
# the machine's: tyro, msgspec, structlog, diffusers, hf_transfer, pydantic and torchao are not imported on
# this path (torchao only for fp8 / QAT, behind guards), and cut_cross_entropy is switched off by unsloth_zoo
# for torch >= 2.8 (UNSLOTH_ENABLE_CCE=0). peer_site.json in the site records the versions, the trimming and
# why no xformers or flash-attn travels.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
exclude=$(git rev-parse --git-path info/exclude)
for path in /.peer-site/ /.peer-site.tar.xz; do
  grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"
done
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
download() {  # download DIR REQUIREMENT...: wheels for the GPU machine's Python 3.12 on x86-64 Linux
  local dir=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$dir" "$@"
}
# datasets 4.8.5 wants fsspec <= 2026.2.0, dill < 0.4.2 and multiprocess < 0.70.20
download "$wheels" unsloth==2026.10.9 unsloth-zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 fsspec==2026.2.0 \
  dill==0.4.1 multiprocess==0.70.19 bitsandbytes==0.50.2
rm -rf .peer-site .peer-site.tar.xz && mkdir .peer-site
for w in "$wheels"/*.whl; do (cd .peer-site && python3 -m zipfile -e "$w" .); done
# Unsloth Studio's web UI (82 MB) and the command line are never imported by the library
rm -rf .peer-site/studio .peer-site/unsloth_cli
# the GPU machine runs CUDA 13: keep only bitsandbytes' CUDA 13 libraries
find .peer-site/bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*cuda13*' -delete

# Attention backends Unsloth would prefer. xformers' C++ extension must match torch and CUDA exactly (Unsloth
# falls back to PyTorch attention when it cannot load: unsloth/models/_utils.py); flash-attn ships no wheel.
mkdir "$wheels/attention"
download "$wheels/attention" xformers
if download "$wheels/attention" flash-attn 2>/dev/null; then
  flash_attn="PyPI now has a flash-attn wheel: check it is built for torch 2.11 + CUDA 13 and carry it"
else
  flash_attn="PyPI has no flash-attn wheel (source only); building it for sm_90 takes far longer than a device call"
fi
python3 - "$flash_attn" "$wheels"/*.whl "$wheels"/attention/xformers-*.whl <<'PY'
import json, pathlib, sys, time, zipfile

flash_attn, *wheels, xformers = sys.argv[1:]
built = json.loads(zipfile.ZipFile(xformers).read("xformers/cpp_lib.json"))["version"]
cuda = "{}.{}".format(*divmod(built["cuda"], 100))
fits = built["torch"].startswith("2.11") and cuda.startswith("13.")
info = {
    "date": time.strftime("%Y-%m-%d"),
    "wheels": sorted(pathlib.Path(w).name for w in wheels),
    "trimmed": ["studio/ (Unsloth Studio web UI)", "unsloth_cli/ (command line)",
                "bitsandbytes libraries for CUDA other than 13"],
    "not_carried": {
        "xformers": f"newest PyPI wheel {pathlib.Path(xformers).name} has its C++ extension built for torch "
                    f"{built['torch']} with CUDA {cuda}; the GPU machine has torch 2.11 with CUDA 13, so "
                    + ("it would load: carry it" if fits else "it cannot load and Unsloth uses PyTorch attention"),
        "flash_attn": flash_attn,
        "torchao": "imported only for fp8 / QAT, behind import guards",
        "cut_cross_entropy": "unsloth_zoo sets UNSLOTH_ENABLE_CCE=0 for torch >= 2.8",
        "tyro, msgspec, structlog, diffusers, hf_transfer, pydantic": "not imported on the QLoRA training path",
    },
}
pathlib.Path(".peer-site/peer_site.json").write_text(json.dumps(info, indent=2) + "\n")
PY
tar -C .peer-site -cJf .peer-site.tar.xz .
echo ".peer-site: $(du -sh .peer-site | cut -f1) unpacked, .peer-site.tar.xz: $(du -h .peer-site.tar.xz | cut -f1)"
