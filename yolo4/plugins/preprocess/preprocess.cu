/*
 * GPU preprocessing of yolo4's TensorRT runtime: uint8 BGR frames (any sizes, already on the device) ->
 * the engine's input [B, 3, H, W] float32 or float16, in one kernel launch per batch of up to
 * YOLO4_PREPROCESS_MAX_BATCH images: resize (plain or letterbox with 0.5 padding) + BGR -> RGB + / 255 +
 * HWC -> CHW. The arithmetic is preprocessCommon.h's (the same as the CPU build preprocessHost.cpp,
 * which the test suite compares with yolo4.runtime.preprocess.preprocess()).
 *
 * Built by yolo4.plugins.build.build_preprocess_library (`yolo4 build-plugin`) into
 * libyolo4_preprocess.so; called from Python by yolo4.runtime.gpu_preprocess.GpuPreprocessor.
 * Nothing newer than sm_70 is used.
 */
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "preprocessCommon.h"

namespace
{

/* the per-image parameters, by value: they reach the kernel with the launch, no copy to synchronise */
struct YoloPreprocessBatchArgs
{
    YoloPreprocessImage images[YOLO4_PREPROCESS_MAX_BATCH];
};

constexpr int kBlock = 256;

__device__ __forceinline__ void yolo4PreprocessStore(float* p, float v)
{
    *p = v;
}

__device__ __forceinline__ void yolo4PreprocessStore(__half* p, float v)
{
    *p = __float2half_rn(v); /* round to nearest even, as numpy's float32 -> float16 */
}

/* one thread per input pixel (x, y) of image blockIdx.y: its three channels */
template <typename T>
__global__ void __launch_bounds__(kBlock) yolo4PreprocessKernel(const YoloPreprocessBatchArgs args, T* dst,
                                                                const int dstH, const int dstW)
{
    const int b = blockIdx.y;
    const int p = blockIdx.x * kBlock + threadIdx.x;
    __shared__ double scale[2]; /* per image: two double divisions once per block, not per pixel */
    if (threadIdx.x == 0) {
        scale[0] = yolo4PreprocessScale(args.images[b].new_w, args.images[b].width);
        scale[1] = yolo4PreprocessScale(args.images[b].new_h, args.images[b].height);
    }
    __syncthreads();
    if (p >= dstH * dstW)
        return;
    float rgb[3];
    yolo4PreprocessPixel(&args.images[b], scale[0], scale[1], p % dstW, p / dstW, rgb);
    const size_t plane = (size_t)dstH * (size_t)dstW;
    T* out = dst + (size_t)b * 3 * plane + (size_t)p;
    for (int c = 0; c < 3; ++c)
        yolo4PreprocessStore(out + c * plane, rgb[c]);
}

} // namespace

extern "C" {

/*
 * Enqueues the preprocessing of `batch` frames on `stream` (no host synchronisation; the frames and dst
 * must stay valid until the stream reaches this point).
 *   images  host array of `batch` YoloPreprocessImage whose data are DEVICE pointers (read at launch time:
 *           the array may be reused as soon as this returns)
 *   dst     device buffer [batch, 3, dst_h, dst_w], float32 (half == 0) or float16 (half != 0), written
 *           entirely (content and padding)
 * Returns YOLO4_PREPROCESS_SUCCESS, YOLO4_PREPROCESS_BAD_PARAM (nothing enqueued), or the cudaError_t of
 * the launch (> 0). Batches above YOLO4_PREPROCESS_MAX_BATCH take one launch per 64 images.
 */
YOLO4_PP_API int yolo4_preprocess_launch(const YoloPreprocessImage* images, int batch, void* dst, int dst_h,
                                         int dst_w, int half, cudaStream_t stream)
{
    const int status = yolo4PreprocessCheck(images, batch, dst, dst_h, dst_w);
    if (status != YOLO4_PREPROCESS_SUCCESS)
        return status;
    const int pixels = dst_h * dst_w;
    const size_t elem = half ? sizeof(__half) : sizeof(float);
    for (int first = 0; first < batch; first += YOLO4_PREPROCESS_MAX_BATCH) {
        const int n = batch - first < YOLO4_PREPROCESS_MAX_BATCH ? batch - first : YOLO4_PREPROCESS_MAX_BATCH;
        YoloPreprocessBatchArgs args;
        memset(&args, 0, sizeof(args));
        memcpy(args.images, images + first, (size_t)n * sizeof(YoloPreprocessImage));
        const dim3 grid((unsigned)((pixels + kBlock - 1) / kBlock), (unsigned)n);
        char* out = static_cast<char*>(dst) + (size_t)first * 3 * (size_t)pixels * elem;
        if (half)
            yolo4PreprocessKernel<__half><<<grid, kBlock, 0, stream>>>(args, reinterpret_cast<__half*>(out), dst_h,
                                                                      dst_w);
        else
            yolo4PreprocessKernel<float><<<grid, kBlock, 0, stream>>>(args, reinterpret_cast<float*>(out), dst_h,
                                                                     dst_w);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return (int)err;
    }
    return YOLO4_PREPROCESS_SUCCESS;
}

/* sizeof(YoloPreprocessImage), for the Python side to check its ctypes mirror */
YOLO4_PP_API int yolo4_preprocess_image_struct_size(void)
{
    return (int)sizeof(YoloPreprocessImage);
}

/* 1: the CUDA build (device pointers), 0: the CPU build */
YOLO4_PP_API int yolo4_preprocess_is_device(void)
{
    return 1;
}

} // extern "C"
