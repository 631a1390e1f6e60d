#!/usr/bin/env bash
# The demo, the main job end to end on the CPU: fine-tune yolov4-tiny briefly on coco128, export it
# to FP32 ONNX and to Q/DQ INT8 ONNX (calibrated on coco128), build a TensorRT-for-RTX engine ahead
# of time when tensorrt-rtx is installed, and detect objects in darknet's sample images with the
# INT8 model on ONNX Runtime. Everything goes to runs/demo/.
# Assets come from $YOLO4_ASSET_MIRROR (default ../shared/data) or are downloaded with a sha256 check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup-env.sh" train,export
cd "$root"
out=runs/demo
epochs="${DEMO_EPOCHS:-3}"
echo "== 1/5 fine-tune yolov4-tiny on coco128 ($epochs epoch(s), CPU) =="
yolo4 train --cfg yolov4-tiny --weights yolov4-tiny --data coco128 --epochs "$epochs" --batch 8 \
  --img-size 416 --output-dir "$out/train" --exist-ok
echo "== 2/5 export to FP32 ONNX =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128.onnx"
echo "== 3/5 export to Q/DQ INT8 ONNX (calibrated on coco128; prints INT8 vs FP32 on the sample images) =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128-int8.onnx" \
  --int8 --calib-data coco128 --calib-images 128
echo "== 4/5 TensorRT for RTX engine, built ahead of time on the CPU for compute capability 8.6 =="
if python -c "import tensorrt_rtx" 2>/dev/null; then
  yolo4 build-engine "$out/yolov4-tiny-coco128-int8.onnx" --backend tensorrt-rtx --compute-capability 8.6 \
    --batch 1,1,4 --output "$out/yolov4-tiny-coco128-int8.engine"
else
  echo "tensorrt-rtx is not installed (pip install tensorrt-rtx): engine build skipped"
fi
echo "== 5/5 detect with the INT8 model on ONNX Runtime =="
images="${YOLO4_ASSET_MIRROR:+$YOLO4_ASSET_MIRROR/darknet/images}"
if [ -z "$images" ] || [ ! -d "$images" ]; then
  echo "error: darknet sample images not found: set YOLO4_ASSET_MIRROR to a folder holding darknet/images" >&2
  exit 2
fi
yolo4 infer "$images" --onnx "$out/yolov4-tiny-coco128-int8.onnx" --output-dir "$out/infer" --exist-ok \
  --save-json "$out/infer/detections.json"
echo
echo "artefacts:"
for f in train/best.pt yolov4-tiny-coco128.onnx yolov4-tiny-coco128-int8.onnx \
         yolov4-tiny-coco128-int8.engine yolov4-tiny-coco128-int8.engine.json infer; do
  [ -e "$out/$f" ] && echo "  $(cd "$out" && pwd)/$f"
done
