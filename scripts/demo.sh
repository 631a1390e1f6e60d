#!/usr/bin/env bash
# The demo, the main job end to end on the CPU: fine-tune yolov4-tiny briefly on coco128, export it
# to FP32 ONNX and to two Q/DQ INT8 ONNX files calibrated on coco128 (one for TensorRT, one for ONNX
# Runtime's CPU kernels), build a TensorRT-for-RTX INT8 engine ahead of time from the TensorRT one,
# time FP32 vs INT8 on ONNX Runtime, and detect objects in darknet's sample images with the INT8
# model made for ONNX Runtime. Everything goes to runs/demo/.
# Assets come from $YOLO4_ASSET_MIRROR (default ../shared/data) or are downloaded with a sha256 check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras=train,export
# TensorRT for RTX (a pip package, x86_64/Windows only) builds the engine ahead of time on the CPU.
case "$(uname -m)" in x86_64|AMD64) extras=train,export,rtx ;; esac
source "$root/scripts/setup-env.sh" "$extras"
cd "$root"
out=runs/demo
epochs="${DEMO_EPOCHS:-3}"
calib_n="${DEMO_CALIB_IMAGES:-128}"
echo "== 1/6 fine-tune yolov4-tiny on coco128 ($epochs epoch(s), CPU) =="
yolo4 train --cfg yolov4-tiny --weights yolov4-tiny --data coco128 --epochs "$epochs" --batch 8 \
  --img-size 416 --output-dir "$out/train" --exist-ok
echo "== 2/6 export to FP32 ONNX =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128.onnx"
echo "== 3/6 INT8 for TensorRT: Q/DQ on Conv inputs, calibrated on coco128 (prints INT8 vs FP32 on the sample images) =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128-int8.onnx" \
  --int8 --int8-target tensorrt --calib-data coco128 --calib-images "$calib_n"
echo "== 4/6 INT8 for ONNX Runtime on the CPU: U8S8 Q/DQ around every Conv, LeakyReLU and max-pool =="
yolo4 export --checkpoint "$out/train/best.pt" --output "$out/yolov4-tiny-coco128-int8-ort.onnx" \
  --int8 --int8-target onnxruntime --calib-data coco128 --calib-images "$calib_n"
echo "== 5/6 TensorRT for RTX engine from the TensorRT INT8 model, built ahead of time on the CPU for compute capability 8.6 =="
if python -c "import tensorrt_rtx" 2>/dev/null; then
  yolo4 build-engine "$out/yolov4-tiny-coco128-int8.onnx" --backend tensorrt-rtx --compute-capability 8.6 \
    --batch 1,1,4 --output "$out/yolov4-tiny-coco128-int8.engine"
else
  echo "tensorrt-rtx is not available on $(uname -m) (TensorRT for RTX ships x86_64 wheels only): engine build skipped"
fi
echo "== 6/6 FP32 vs INT8 on ONNX Runtime (forward pass, batch 1, this CPU), then detect with the INT8 model =="
for m in yolov4-tiny-coco128 yolov4-tiny-coco128-int8-ort yolov4-tiny-coco128-int8; do
  yolo4 benchmark --onnx "$out/$m.onnx" --batch 1 --iterations "${DEMO_BENCH_ITERATIONS:-30}" --warmup 3 \
    --json "$out/bench-$m.json" > /dev/null
done
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
p50 = {m: json.load(open("%s/bench-%s.json" % (out, m)))["results"][0]["p50_ms"]
       for m in ("yolov4-tiny-coco128", "yolov4-tiny-coco128-int8-ort", "yolov4-tiny-coco128-int8")}
fp32 = p50["yolov4-tiny-coco128"]
for m, what in (("yolov4-tiny-coco128", "FP32"), ("yolov4-tiny-coco128-int8-ort", "INT8, --int8-target onnxruntime"),
                ("yolov4-tiny-coco128-int8", "INT8, --int8-target tensorrt (made for TensorRT, not this CPU)")):
    print("  %-64s p50 %6.1f ms  %.2fx FP32 speed" % (what, p50[m], fp32 / p50[m]))
PY
images="${YOLO4_ASSET_MIRROR:+$YOLO4_ASSET_MIRROR/darknet/images}"
if [ -z "$images" ] || [ ! -d "$images" ]; then
  echo "error: darknet sample images not found: set YOLO4_ASSET_MIRROR to a folder holding darknet/images" >&2
  exit 2
fi
yolo4 infer "$images" --onnx "$out/yolov4-tiny-coco128-int8-ort.onnx" --output-dir "$out/infer" --exist-ok \
  --save-json "$out/infer/detections.json"
echo
echo "artefacts:"
for f in train/best.pt yolov4-tiny-coco128.onnx yolov4-tiny-coco128-int8.onnx yolov4-tiny-coco128-int8-ort.onnx \
         yolov4-tiny-coco128-int8.engine yolov4-tiny-coco128-int8.engine.json infer; do
  [ -e "$out/$f" ] && echo "  $(cd "$out" && pwd)/$f"
done
