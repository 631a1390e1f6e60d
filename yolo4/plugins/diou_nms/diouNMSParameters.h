/*
 * DIoU-NMS plugin (DIoUNMS_TRT): every parameter in one struct.
 *
 * Plain C (used by the CUDA kernels, the TensorRT glue, the CPU build and Python ctypes alike).
 * The attribute fields are the plugin fields / ONNX node attributes, one for one with
 * yolo4.nms_params.NmsParams.plugin_attributes(); the tensor fields are filled by the
 * glue from the input tensors (configurePlugin / enqueue), never by the user.
 */
#ifndef DIOU_NMS_PARAMETERS_H
#define DIOU_NMS_PARAMETERS_H

#include <stdint.h>

/* nms_kind codes (yolo4.nms_params.NMS_KIND_CODES; darknet src/box.c) */
#define DIOU_NMS_KIND_DEFAULT 0   /* plain IoU (do_nms_sort) */
#define DIOU_NMS_KIND_GREEDY 1    /* greedynms: DIoU, exponent fixed at 0.6 (box_diou) */
#define DIOU_NMS_KIND_DIOU 2      /* diounms: DIoU, exponent beta_nms (box_diounms) */
#define DIOU_NMS_GREEDY_BETA 0.6f /* darknet's hard-coded exponent of box_diou */

/* dataType: the type of boxes, scores, detection_boxes and detection_scores */
#define DIOU_NMS_TYPE_FLOAT 0
#define DIOU_NMS_TYPE_HALF 1

/* frameMode: what NMS coordinates are divided by */
#define DIOU_NMS_FRAME_INPUT 0   /* (inputWidth, inputHeight); <= 0 means raw pixels (1) */
#define DIOU_NMS_FRAME_PER_IMAGE 1 /* the optional third input norm_wh [B,2] float32 (letterbox content w,h) */

/* status codes of diouNMSLaunch (positive values are cudaError_t codes) */
#define DIOU_NMS_SUCCESS 0
#define DIOU_NMS_BAD_PARAM (-1)

typedef struct DiouNMSParameters
{
    /* attributes (plugin fields, ONNX node attributes) */
    float scoreThreshold;   /* score_threshold: (box, class) is a candidate when score > this (strictly) */
    float iouThreshold;     /* iou_threshold: j suppressed by a kept i when IoU - (d^2/c^2)^beta > this */
    float betaNms;          /* beta_nms: the DIoU exponent of nms_kind 2 */
    int32_t nmsKind;        /* nms_kind: DIOU_NMS_KIND_* */
    int32_t maxOutputBoxes; /* max_output_boxes: K, detections per image (fixed output shape) */
    int32_t topK;           /* top_k: at most this many candidates per image enter NMS (highest scores) */
    int32_t classAgnostic;  /* class_agnostic: 1 = NMS across classes, 0 = per class (darknet) */
    int32_t inputWidth;     /* input_width: NMS frame width (network input), <= 0 = raw pixels */
    int32_t inputHeight;    /* input_height: NMS frame height */

    /* tensors (set by the glue from the inputs) */
    int32_t batchSize;  /* B */
    int32_t numBoxes;   /* N */
    int32_t numClasses; /* C */
    int32_t dataType;   /* DIOU_NMS_TYPE_* */
    int32_t frameMode;  /* DIOU_NMS_FRAME_*: 1 when the norm_wh input is connected */
} DiouNMSParameters;

#endif /* DIOU_NMS_PARAMETERS_H */
