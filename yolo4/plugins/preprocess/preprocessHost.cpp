/*
 * The CPU build of the GPU preprocessing (tests only): the same C entry points as preprocess.cu, the same
 * per-pixel arithmetic (preprocessCommon.h), looping over pixels on the host instead of one CUDA thread
 * each. tests/test_gpu_preprocess.py compares it with yolo4.runtime.preprocess.preprocess().
 *
 * Built by yolo4.plugins.build.build_preprocess_host_library (g++ -ffp-contract=off; no CUDA).
 */
#include "preprocessCommon.h"

extern "C" {

/*
 * yolo4_preprocess_launch of preprocess.cu on host memory: the images' data and dst are HOST pointers,
 * `stream` is ignored and the work is done when this returns. dst: [batch, 3, dst_h, dst_w] float32
 * (half == 0) or float16 bits (half != 0). Returns YOLO4_PREPROCESS_SUCCESS or YOLO4_PREPROCESS_BAD_PARAM.
 */
YOLO4_PP_API int yolo4_preprocess_launch(const YoloPreprocessImage* images, int batch, void* dst, int dst_h,
                                         int dst_w, int half, void* stream)
{
    (void)stream;
    const int status = yolo4PreprocessCheck(images, batch, dst, dst_h, dst_w);
    if (status != YOLO4_PREPROCESS_SUCCESS)
        return status;
    const size_t plane = (size_t)dst_h * (size_t)dst_w;
    for (int b = 0; b < batch; ++b) {
        const double scaleX = yolo4PreprocessScale(images[b].new_w, images[b].width);
        const double scaleY = yolo4PreprocessScale(images[b].new_h, images[b].height);
        for (int y = 0; y < dst_h; ++y) {
            for (int x = 0; x < dst_w; ++x) {
                float rgb[3];
                yolo4PreprocessPixel(&images[b], scaleX, scaleY, x, y, rgb);
                const size_t at = (size_t)b * 3 * plane + (size_t)y * (size_t)dst_w + (size_t)x;
                for (int c = 0; c < 3; ++c) {
                    if (half)
                        static_cast<unsigned short*>(dst)[at + c * plane] = yolo4PpHalfBits(rgb[c]);
                    else
                        static_cast<float*>(dst)[at + c * plane] = rgb[c];
                }
            }
        }
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
    return 0;
}

} // extern "C"
