#!/usr/bin/env bash
# The GPU checks of issue #13 in one run, sized for one H100/H200 lease (expected under 8 minutes;
# the three steps' timeouts add up to 10, so a lease of 15 leaves time for the start): the CUDA
# tests (pytest -m cuda: policy graphs and kernels, perception graphs and matching), then the CUDA
# sections of the policy benchmark (graph sampler, the inductor-fused graph in fp32/TF32/bf16 and
# the Triton residual-block kernels in fp32/TF32 with each one's error, batched chunks at
# B = 1/8/64 (packed and Triton blocks), training throughput and the projected 250k-step time) and
# of the perception benchmark (matching on the GPU, the paper-sized RADIO-B, DINOv3-B, DIFT2 and
# SAM3). JSON and logs go to $OUT (the device tool's output folder) or
# outputs/gpu_check.
#
# On a ROS-free GPU machine (the device tool's): the packages are used from source (PYTHONPATH),
# and what the machine lacks travels as wheels in .whl/ (see /work/.library/device/README.md):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       diffusers==0.42.1 rosbags==0.11.9 ruamel.yaml ruamel.yaml.clib lz4 backports.zstd apsw \
#       transformers==5.24.0 huggingface_hub==2.4.0
# (transformers: the RadioModel/Sam3Model/DINOv3 classes this repository is tested with; the
# machine's own may be older) then run with carry [".whl"]:  bash tools/gpu_check.sh
# Checked on the CPU with ROS blocked from import: the CUDA tests collect and both benchmarks run.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${OUT:-outputs/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! python3 -c "import diffusers, rosbags; from transformers import RadioModel, Sam3Model" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
for package in kil_interfaces kil_control kil_perception kil_policy kil_teleop; do
    PYTHONPATH=$root/$package${PYTHONPATH:+:$PYTHONPATH}
done
export PYTHONPATH
started=$(date +%s)
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

echo "== CUDA tests" | tee "$out/cuda_tests.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda kil_policy/test/test_policy_cuda.py \
    kil_perception/test/test_perception_cuda.py 2>&1 \
    | tee -a "$out/cuda_tests.txt" || status=1

echo "== policy benchmark (CUDA)"
timeout 300 python3 -m kil_policy.bench --json --devices cuda --repeats 40 --train-iterations 20 \
    > "$out/policy_bench.json" 2> "$out/policy_bench.log" || status=1

echo "== perception benchmark"
timeout 150 python3 -m kil_perception.bench --json --repeats 5 > "$out/perception_bench.json" 2> "$out/perception_bench.log" || status=1

echo "gpu_check: $(( $(date +%s) - started )) s, status $status" | tee -a "$out/gpu.txt"
exit $status
