#!/usr/bin/env bash
# The main job on the embedded default, on a CPU in a few minutes: the published perf launcher trains the tiny
# VGGT on generated scenes (2 processes, 110 steps), then `vggt predict` runs the trained model on a scene it
# never saw (a test-split sequence) and writes depth maps, a point cloud and previews.
#
#   examples/quickstart.sh        (no options)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

test/train_8p_vggt_perf.sh --device cpu --nproc 2 --data synthetic --max-epochs 1 --max-steps 110

scenes=runs/launcher_scenes  # where the launcher caches its generated scenes
held_out="$(python -c "
import gzip, json, sys
root = sys.argv[1]
category = json.load(open(f'{root}/manifest.json'))['params']['category']
sequence = sorted(json.load(gzip.open(f'{root}/co3d_annotations/{category}_test.jgz')))[0]
print(f'{root}/co3d/{category}/{sequence}/images')" "${scenes}")"
checkpoint=test/output/VGGT_8p_perf/run/ckpts/checkpoint.pt
vggt predict --images "${held_out}" --model "${checkpoint}" --config tiny --resolution 112 --device cpu \
    --export depth,ply,preview --out runs/quickstart_predict --overwrite

echo
echo "training log:     test/output/VGGT_8p_perf/train.log"
echo "summary:          test/output/VGGT_8p_perf/VGGT_8p_perf.log"
echo "checkpoint:       ${checkpoint}"
echo "held-out scene:   ${held_out}"
echo "predictions:      runs/quickstart_predict (predictions.npz, depth/, points.ply, preview/points.png)"
