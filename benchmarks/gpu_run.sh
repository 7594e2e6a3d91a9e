#!/usr/bin/env bash
# One short run where a GPU is at hand (prepared for the device machine, not run yet; about 10 minutes):
#   bash benchmarks/gpu_run.sh            # results under $OUT (default build/gpu_run) and figures/bench/
# 1. install the package into .venv (make env), 2. tests/test_devices.py (CUDA parity), 3. make bench (GPU
# columns of figures/bench/), 4. the cost model with measured device pieces (figures/bench/paper_cost.*),
# 5. the paper profiles on fakes (random-weight checkpoints, a fake validation folder) at a few hundred
# images with the paper's own budgets cut only where the fakes cannot bear them; the wall time of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_run}
IMAGES=${IMAGES:-100}
VENV=${VENV:-.venv}
mkdir -p "$OUT" figures/bench
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu_run.log"; }
step() { local name=$1; shift; local t0=$SECONDS; log "start $name"; set +e; "$@" > "$OUT/$name.log" 2>&1; local rc=$?; set -e
         echo "$name,$rc,$((SECONDS - t0))" >> "$OUT/steps.csv"; log "end $name rc=$rc $((SECONDS - t0)) s"; }
echo "step,rc,seconds" > "$OUT/steps.csv"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# the device machine may have no network: an environment already there (VENV=) is used as it is
if [ -x "$VENV/bin/python" ]; then touch "$VENV/.liftcam-installed"; else step install make env VENV="$VENV"; fi
PY=$VENV/bin/python
export VENV
step devices "$PY" -m pytest -q tests/test_devices.py tests/test_paper_profile.py -k "devices or forward"
step bench make bench VENV="$VENV"
step cost_model "$PY" benchmarks/paper_cost.py --device cuda --out figures/bench

# the paper profiles on fakes: TORCH_HOME with random weights under torchvision's names, a flat folder + CSV
FAKE="$OUT/fake"
step fakes "$PY" - "$FAKE" "$IMAGES" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
import torch, torchvision
from test_paper_profile import fake_imagenet
root, n = Path(sys.argv[1]), int(sys.argv[2])
ckpt = root / "torch" / "hub" / "checkpoints"
ckpt.mkdir(parents=True, exist_ok=True)
for arch, w in (("vgg16", torchvision.models.VGG16_Weights.IMAGENET1K_V1),
                ("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V1)):
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, arch)().state_dict(), ckpt / Path(w.url).name)
fake_imagenet(root, "flat", n)
EOF
# budgets: the paper's, except Score-CAM and the curves on a few images (the rest at IMAGES images)
cat > "$OUT/budgets.yaml" <<EOF
figures_dir: $OUT/figures
cache_dir: $OUT/cache
score_cam_images: 20
curve_images: 20
EOF
for profile in vgg16 resnet50; do
    TORCH_HOME="$FAKE/torch" LIFTCAM_UNVERIFIED_WEIGHTS=1 step "reproduce_$profile" timeout 240 \
        make reproduce VENV="$VENV" PROFILE=$profile IMAGENET="$FAKE/flat/val" EVAL_IMAGES="$IMAGES" PARAMS="$OUT/budgets.yaml" \
        BUILD="$OUT/build/$profile"
done
cp -r figures/bench "$OUT/bench"
log "done; steps in $OUT/steps.csv"
