/*
 * DIoU-NMS plugin: the two functions the TensorRT glue calls (no TensorRT dependency).
 *
 * Implemented on the GPU by diouNMSKernels.cu and, with the same signature and stages, on the CPU
 * by diouNMSHost.cpp (the test suite's build; define DIOU_NMS_HOST_ONLY there: no CUDA headers).
 */
#ifndef DIOU_NMS_KERNELS_H
#define DIOU_NMS_KERNELS_H

#include <stddef.h>

#include "diouNMSParameters.h"

#if defined(DIOU_NMS_HOST_ONLY)
typedef struct CUstream_st* cudaStream_t; /* the same declaration as CUDA's driver_types.h */
#else
#include <cuda_runtime_api.h>
#endif

#if defined(_WIN32)
#define DIOU_NMS_API __declspec(dllexport)
#else
#define DIOU_NMS_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Bytes of device memory diouNMSLaunch needs for param's batchSize, numBoxes, numClasses (enough for
 * any smaller batch or box count too), or 0 when param is invalid. The CUDA build asks CUB for its
 * scratch sizes on the current device; about 16 * B * N * C + 40 * B * min(top_k, N * C) bytes.
 */
DIOU_NMS_API size_t diouNMSWorkspaceSize(DiouNMSParameters const* param);

/*
 * Batched DIoU-NMS of all images and classes, enqueued on stream (no host synchronisation).
 *   boxes   [B, N, 4] x1, y1, x2, y2 (input pixels), scores [B, N, C]: float or half (param->dataType)
 *   normWH  [B, 2] float32 per-image NMS frame (w, h) when param->frameMode == DIOU_NMS_FRAME_PER_IMAGE,
 *           else ignored (may be NULL)
 *   numDetections [B, 1] int32; detectionBoxes [B, K, 4], detectionScores [B, K] (input type);
 *   detectionClasses [B, K] int32; rows past numDetections are 0, classes -1.
 *   workspace: at least diouNMSWorkspaceSize(param) bytes, 256-byte aligned.
 * Returns DIOU_NMS_SUCCESS, DIOU_NMS_BAD_PARAM, or a cudaError_t code.
 */
DIOU_NMS_API int diouNMSLaunch(DiouNMSParameters const* param, void const* boxes, void const* scores,
    float const* normWH, void* numDetections, void* detectionBoxes, void* detectionScores, void* detectionClasses,
    void* workspace, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* DIOU_NMS_KERNELS_H */
