/*
 * GPU preprocessing of yolo4's TensorRT runtime: the per-output-pixel arithmetic, shared by the CUDA
 * kernel (preprocess.cu) and the CPU build the test suite runs (preprocessHost.cpp, g++ only).
 *
 * What it computes, for each image b of a batch and each input pixel (x, y), channel c in R, G, B:
 *
 *   dst[b, c, y, x] = resize(src_b)[y - pad_y, x - pad_x, 2 - c] / 255   inside the content
 *                                                                          (new_w x new_h at pad_x, pad_y)
 *                   = 0.5                                                 outside it (letterbox padding)
 *
 * i.e. yolo4.runtime.preprocess.preprocess(): BGR -> RGB, HWC -> CHW, uint8 / 255 in float32 (or float16
 * rounded from that float32), letterbox geometry given by the caller (letterbox_geometry in Python, the
 * one place it lives). resize() is cv2.resize(..., INTER_LINEAR) of the uint8 image, reproduced the way
 * OpenCV computes it for 8-bit images (modules/imgproc/src/resize.cpp, resizeGeneric with fixed-point
 * weights), so that the result is the same uint8 before the division:
 *
 *   per axis, for destination index d (0 .. dst-1) of a src -> dst resize:
 *     scale = 1 / (dst / src)                         (double)
 *     f     = (float)((d + 0.5) * scale - 0.5)        half-pixel centres, double then rounded to float
 *     s     = floor(f); f -= s
 *     x axis only: s < 0 -> s = 0, f = 0; s >= src - 1 -> s = src - 1, f = 0   (border: replicate)
 *     y axis: the weights keep f; the two rows s, s + 1 are clamped to 0 .. src - 1
 *     weights w0 = round(2048 * (1 - f)), w1 = round(2048 * f)   (INTER_RESIZE_COEF_BITS = 11, ties to even)
 *   horizontal: h = S[s] * w0 + S[s + 1] * w1 (int, per source row and channel)
 *   vertical (OpenCV's vectorised rounding): v = (((wy0 * (h0 >> 4)) >> 16) + ((wy1 * (h1 >> 4)) >> 16) + 2) >> 2,
 *     saturated to 0 .. 255
 *
 * Measured against cv2 4.x on x86-64 (tests/test_gpu_preprocess.py): identical uint8 on every case
 * tried; the guarantee the tests hold it to is |difference| <= 1/255 everywhere. Where an OpenCV build
 * rounds differently (its scalar tail loop, ARM/NEON or HAL paths), a pixel may differ by one level.
 *
 * No FMA contraction may change the double arithmetic: the device code uses __dmul_rn/__dadd_rn, the
 * host build is compiled with -ffp-contract=off.
 *
 * Compiles as CUDA (nvcc: __host__ __device__) and as plain C++ (g++: inline functions).
 */
#ifndef YOLO4_PREPROCESS_COMMON_H
#define YOLO4_PREPROCESS_COMMON_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__CUDACC__)
#define YOLO4_PP_HD __host__ __device__ __forceinline__
#else
#define YOLO4_PP_HD static inline
#endif

#if defined(_WIN32)
#define YOLO4_PP_API __declspec(dllexport)
#else
#define YOLO4_PP_API __attribute__((visibility("default")))
#endif

/* images per kernel launch (the per-image parameters travel by value in the kernel's parameter space:
 * 64 x 48 bytes, under the 4 KiB limit of every CUDA release); larger batches take several launches */
#define YOLO4_PREPROCESS_MAX_BATCH 64
/* status codes of the launchers (positive: a cudaError_t) */
#define YOLO4_PREPROCESS_SUCCESS 0
#define YOLO4_PREPROCESS_BAD_PARAM (-1)
/* OpenCV's INTER_RESIZE_COEF_BITS and its scale */
#define YOLO4_PREPROCESS_COEF_BITS 11
#define YOLO4_PREPROCESS_COEF_SCALE 2048
/* letterbox padding, exactly (darknet src/image.c letterbox_image: fill_image(boxed, .5)) */
#define YOLO4_PREPROCESS_PAD 0.5f

#ifdef __cplusplus
extern "C" {
#endif

/*
 * One source frame and where it goes in the network input (all sizes in pixels, stride in bytes).
 * Python: yolo4.runtime.gpu_preprocess.PreprocessImage, field for field (48 bytes on 64-bit systems).
 */
typedef struct YoloPreprocessImage {
    const unsigned char* data; /* HxWx3 uint8 BGR: a device pointer for the CUDA launcher, host for the CPU build */
    int width;                 /* source width W (> 0) */
    int height;                /* source height H (> 0) */
    int stride;                /* bytes from one source row to the next (>= 3 * width) */
    int new_w;                 /* content size in the input: 1 .. dst_w */
    int new_h;                 /* 1 .. dst_h */
    int pad_x;                 /* content offset in the input (>= 0, pad_x + new_w <= dst_w) */
    int pad_y;
    int letterbox;             /* 1: pixels outside the content are 0.5; 0: plain resize (content = whole input) */
    int reserved;              /* 0 */
} YoloPreprocessImage;

#ifdef __cplusplus
}
#endif

/* one axis of the bilinear resize: the two source indices and their 11-bit weights */
typedef struct YoloPreprocessTap {
    int i0, i1;
    int w0, w1;
} YoloPreprocessTap;

YOLO4_PP_HD double yolo4PpMul(double a, double b)
{
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

YOLO4_PP_HD double yolo4PpAdd(double a, double b)
{
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

/* round to nearest, ties to even (OpenCV's cvRound / saturate_cast<short> of a float) */
YOLO4_PP_HD int yolo4PpRound(float v)
{
#if defined(__CUDA_ARCH__)
    return __float2int_rn(v);
#else
    return (int)rintf(v);
#endif
}

YOLO4_PP_HD int yolo4PpClamp(int v, int lo, int hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* source pixels per destination pixel of a src -> dst resize, as OpenCV computes it (1 / (dst / src));
 * the same for every pixel of an image: the kernel computes it once per block */
YOLO4_PP_HD double yolo4PreprocessScale(int dst, int src)
{
    const double inv = (double)dst / (double)src;
    return 1.0 / inv;
}

/*
 * Destination index d of a src -> dst resize along one axis (cv2 INTER_LINEAR, half-pixel centres),
 * scale = yolo4PreprocessScale(dst, src). clampWeights: the x axis (OpenCV replicates the border column
 * by zeroing the weight); the y axis keeps the weights and clamps the rows.
 */
YOLO4_PP_HD YoloPreprocessTap yolo4PreprocessTap(int d, double scale, int src, int clampWeights)
{
    float f = (float)yolo4PpAdd(yolo4PpMul((double)d + 0.5, scale), -0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (clampWeights) {
        if (s < 0) {
            f = 0.f;
            s = 0;
        }
        if (s >= src - 1) {
            f = 0.f;
            s = src - 1;
        }
    }
    YoloPreprocessTap t;
    t.w0 = yolo4PpRound((1.f - f) * (float)YOLO4_PREPROCESS_COEF_SCALE);
    t.w1 = yolo4PpRound(f * (float)YOLO4_PREPROCESS_COEF_SCALE);
    t.i0 = yolo4PpClamp(s, 0, src - 1);
    t.i1 = yolo4PpClamp(s + 1, 0, src - 1);
    return t;
}

/*
 * The three values of input pixel (x, y) of image im, in output channel order R, G, B, as float32
 * (uint8 / 255, or 0.5 in the letterbox padding). scaleX = yolo4PreprocessScale(im->new_w, im->width),
 * scaleY = yolo4PreprocessScale(im->new_h, im->height). The caller checked im (yolo4PreprocessCheck).
 */
YOLO4_PP_HD void yolo4PreprocessPixel(const YoloPreprocessImage* im, double scaleX, double scaleY, int x, int y,
                                      float rgb[3])
{
    const int cx = x - im->pad_x;
    const int cy = y - im->pad_y;
    if (cx < 0 || cy < 0 || cx >= im->new_w || cy >= im->new_h) {
        rgb[0] = rgb[1] = rgb[2] = YOLO4_PREPROCESS_PAD;
        return;
    }
    const YoloPreprocessTap tx = yolo4PreprocessTap(cx, scaleX, im->width, 1);
    const YoloPreprocessTap ty = yolo4PreprocessTap(cy, scaleY, im->height, 0);
    const unsigned char* r0 = im->data + (size_t)ty.i0 * (size_t)im->stride;
    const unsigned char* r1 = im->data + (size_t)ty.i1 * (size_t)im->stride;
    const int x0 = 3 * tx.i0, x1 = 3 * tx.i1;
    for (int c = 0; c < 3; ++c) { /* source B, G, R -> output R, G, B */
        const int h0 = (int)r0[x0 + c] * tx.w0 + (int)r0[x1 + c] * tx.w1;
        const int h1 = (int)r1[x0 + c] * tx.w0 + (int)r1[x1 + c] * tx.w1;
        int v = ((ty.w0 * (h0 >> 4)) >> 16) + ((ty.w1 * (h1 >> 4)) >> 16);
        v = yolo4PpClamp((v + 2) >> 2, 0, 255);
        rgb[2 - c] = (float)v * (1.0f / 255.0f);
    }
}

/* float32 -> IEEE binary16 bits, round to nearest even (what numpy's astype(float16) and CUDA's
 * __float2half_rn do); finite inputs, overflow -> infinity */
YOLO4_PP_HD unsigned short yolo4PpHalfBits(float value)
{
    unsigned int u;
#if defined(__CUDA_ARCH__)
    u = __float_as_uint(value);
#else
    memcpy(&u, &value, sizeof(u));
#endif
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int absu = u & 0x7fffffffu;
    if (absu >= 0x477ff000u) /* >= 65520: rounds to infinity (NaN also maps here) */
        return (unsigned short)(sign | (absu > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (absu < 0x38800000u) { /* below 2^-14: a subnormal half (or zero) */
        if (absu < 0x33000000u) /* below 2^-25: rounds to zero */
            return (unsigned short)sign;
        const unsigned int mant = (absu & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(absu >> 23); /* 14 .. 24 */
        unsigned int h = mant >> shift;
        const unsigned int rest = mant & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (h & 1u)))
            ++h;
        return (unsigned short)(sign | h);
    }
    unsigned int h = ((absu - 0x38000000u) >> 13); /* rebias the exponent, keep 10 mantissa bits */
    const unsigned int rest = absu & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        ++h; /* a carry into the exponent is the correct rounding */
    return (unsigned short)(sign | h);
}

/*
 * Validates a launch: 1 <= batch, dst not null, input size positive, every image with data, positive
 * size, stride >= 3 * width, its content inside the input, a plain-resize image covering the whole input.
 * Returns YOLO4_PREPROCESS_SUCCESS or YOLO4_PREPROCESS_BAD_PARAM.
 */
static inline int yolo4PreprocessCheck(const YoloPreprocessImage* images, int batch, const void* dst, int dst_h,
                                       int dst_w)
{
    if (images == NULL || batch < 1 || dst == NULL || dst_h < 1 || dst_w < 1 || dst_h > 65535 || dst_w > 65535)
        return YOLO4_PREPROCESS_BAD_PARAM;
    for (int b = 0; b < batch; ++b) {
        const YoloPreprocessImage* im = &images[b];
        if (im->data == NULL || im->width < 1 || im->height < 1 || im->stride < 3 * im->width)
            return YOLO4_PREPROCESS_BAD_PARAM;
        if (im->new_w < 1 || im->new_h < 1 || im->pad_x < 0 || im->pad_y < 0 || im->new_w > dst_w - im->pad_x
            || im->new_h > dst_h - im->pad_y)
            return YOLO4_PREPROCESS_BAD_PARAM;
        if (!im->letterbox && (im->new_w != dst_w || im->new_h != dst_h || im->pad_x != 0 || im->pad_y != 0))
            return YOLO4_PREPROCESS_BAD_PARAM;
    }
    return YOLO4_PREPROCESS_SUCCESS;
}

#endif /* YOLO4_PREPROCESS_COMMON_H */
