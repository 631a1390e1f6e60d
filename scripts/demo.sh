#!/usr/bin/env bash
# The demo: fine-tune yolov4-tiny briefly on coco128 on the CPU, export it to ONNX, and detect
# objects in darknet's sample images with ONNX Runtime. Everything goes to runs/demo/.
# Assets come from $YOLO4_ASSET_MIRROR (default ../shared/data) or are downloaded with a sha256 check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup-env.sh" train,export
cd "$root"
out=runs/demo
epochs="${DEMO_EPOCHS:-3}"
echo "== 1/3 fine-tune yolov4-tiny on coco128 ($epochs epoch(s), CPU) =="
yolo4 train --cfg yolov4-tiny --weights yolov4-tiny --data coco128 --epochs "$epochs" --batch 8 \
  --img-size 416 --output-dir "$out/train" --exist-ok
echo "== 2/3 export to ONNX =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128.onnx"
echo "== 3/3 detect with ONNX Runtime =="
images="${YOLO4_ASSET_MIRROR:+$YOLO4_ASSET_MIRROR/darknet/images}"
if [ -z "$images" ] || [ ! -d "$images" ]; then
  echo "error: darknet sample images not found: set YOLO4_ASSET_MIRROR to a folder holding darknet/images" >&2
  exit 2
fi
yolo4 infer "$images" --onnx "$out/yolov4-tiny-coco128.onnx" --output-dir "$out/infer" --exist-ok \
  --save-json "$out/infer/detections.json"
