#!/usr/bin/env bash
# Face-model training on a lent GPU machine (docs/training.md, "On a lent GPU"). It runs there,
# from the repository root, on the JAX backend: that machine has JAX and no TensorFlow.
#
#   bash tools/device_train.sh stash              keep the FER2013 part(s) this call carried
#   bash tools/device_train.sh study [ARGS...]    face_model_study.py ARGS (e.g. --rows ferplus)
#   bash tools/device_train.sh train [ARGS...]    kemo train fer2013 ARGS (e.g. --epochs 60)
#
# FER2013 travels as the part folders of tools/fer2013_pack.py, in .devdata/ (one part per call
# when the repository and the data together exceed the 64 MiB a call carries); each call keeps
# what it carried in $STORE, which lasts as long as the machine stays warm. Keras and its small
# pure-Python needs travel as wheels in .whl/. Results, logs and the exported weights are written
# under $OUT after every row or epoch, so a call stopped at its time limit loses nothing done.
set -euo pipefail
STORE=${STORE:-/root/kemo-devdata}
mkdir -p "$STORE"
for part in .devdata/part*; do
    if [ -d "$part" ]; then cp -r "$part" "$STORE/"; fi
done
what=${1:?say stash, study or train}
shift
if [ "$what" = stash ]; then
    ls "$STORE"
    exit 0
fi

export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax \
    PYTHONUNBUFFERED=1
if ! python3 -c "import keras" 2>/dev/null; then  # a dry run here has Keras already
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
if [ ! -f /tmp/fer2013/fer2013.npz ]; then
    python3 tools/fer2013_pack.py unpack "$STORE"/part* --out /tmp/fer2013
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true

case "$what" in
study)
    # the rows already done (weights/fer2013_study.json) are skipped; the JSON and the card's
    # study table come back in $OUT after every row
    cp weights/fer2013_study.json weights/fer2013_resnet10.md "$OUT/"
    python3 benchmarks/face_model_study.py --data /tmp/fer2013 --runs "$STORE/study" \
        --out "$OUT/fer2013_study.json" --card "$OUT/fer2013_resnet10.md" "$@" 2>&1 \
        | tee "$OUT/study.log"
    ;;
train)
    # checkpoints stay in $STORE (a rerun while the machine is warm resumes); the exported
    # weights and the run's state come back in $OUT
    python3 -m kemo.cli train fer2013 --data /tmp/fer2013 --out "$STORE/train" "$@" 2>&1 \
        | tee "$OUT/train.log"
    cp "$STORE/train/state.json" "$STORE/train/fer2013_resnet10.weights.h5" "$OUT/" || true
    ;;
*)
    echo "unknown step '$what': say stash, study or train" >&2
    exit 2
    ;;
esac
