#!/usr/bin/env bash
# The learned backends' tests on a CUDA machine (the tiny pipelines on the GPU, fp16, seeded),
# for a host that has CUDA torch, transformers, scikit-image, numpy, pyarrow and pytest but none
# of this project's other dependencies and no network (a lent accelerator machine).
#   here:  infra/gpu-check.sh prepare        # pure-Python wheels the tests need -> .whl/
#   there: bash infra/gpu-check.sh run       # from the repository root, .whl/ carried along
set -euo pipefail
case "${1:-run}" in
prepare)
  mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: -d .whl \
    diffusers==0.42.1 hy3dgen==2.0.2 trimesh==5.2.0
  ls -l .whl
  ;;
run)
  site=/tmp/af-site
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  # hy3dgen.shapegen's package imports its postprocessors, which import pymeshlab (and name
  # two of its classes in annotations); the shape pipeline never calls them, and pymeshlab's
  # wheel is too large to carry: a stand-in with those two names.
  mkdir -p "$site/pymeshlab"
  printf 'class MeshSet:\n    pass\n\n\nclass Mesh:\n    pass\n' > "$site/pymeshlab/__init__.py"
  python3 -m pip install -q --no-deps --no-build-isolation --target "$site" .
  export PYTHONPATH="$site" PYTHONUNBUFFERED=1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  python3 -m pytest -p no:cacheprovider -q -rs tests/models/test_shap_e.py \
    tests/models/test_hunyuan3d.py -k "gpu or generates or batch or faces_the_camera"
  ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
