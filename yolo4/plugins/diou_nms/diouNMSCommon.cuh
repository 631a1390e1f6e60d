/*
 * DIoU-NMS plugin: the arithmetic and the per-element stage bodies, shared by the CUDA kernels
 * (diouNMSKernels.cu) and the CPU build (diouNMSHost.cpp) that the test suite checks against the
 * numpy reference (yolo4.runtime.postprocess). No TensorRT, and no CUDA either unless compiled by
 * nvcc: the same file compiles with plain g++ (DNMS_HD expands to nothing there).
 *
 * Semantics (darknet src/box.c, yolo4/runtime/postprocess.py; the reference computes in float64,
 * this code in float32 -- see "Precision" in README.md):
 *   IoU(a, b)  = inter / union, 0 when inter or union is 0 (box_iou)
 *   penalty    = (d^2 / c^2) ** beta, d = distance of the centres, c = diagonal of the enclosing
 *                box, 0 when c = 0 (box_diounms; beta 0.6 for greedynms = box_diou)
 *   suppresses = IoU > thr && (plain IoU || IoU - penalty > thr)
 * Every float operation is written out in the reference's order, rounded to nearest with no
 * fused multiply-add (explicit __f*_rn on the device; the CPU build uses -ffp-contract=off), so
 * the GPU and CPU builds compute bit-identical values; the one transcendental, pow, runs in double.
 */
#ifndef DIOU_NMS_COMMON_CUH
#define DIOU_NMS_COMMON_CUH

#include "diouNMSParameters.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define DNMS_HD __host__ __device__ __forceinline__
#else
#define DNMS_HD inline
#endif

namespace diou_nms
{

//! NMS tile: candidates of a group handled together (one CUDA block; a TILE x TILE bit matrix)
constexpr int kTile = 256;
constexpr int kTileWords = kTile / 64;
//! candidate selection: scores per block (kScanThreads threads x kScanItems consecutive items)
constexpr int kScanThreads = 256;
constexpr int kScanItems = 4;
constexpr int kScanTile = kScanThreads * kScanItems;
//! score key of a (top_k) candidate that NMS suppressed: below every candidate (scores > thr >= 0)
constexpr float kSuppressedKey = -1.0f;
//! the top_k cut (stage 1a of the CUDA build): a radix select over a candidate's score bits, kDigitBits at a
//! time, from bit 30 down (bit 31, the sign, is 0: candidates are > thr >= 0, so the bits order as the values)
constexpr int kDigitBits = 11;
constexpr int kDigits = 1 << kDigitBits;
constexpr int kCutPasses = 2;                       // bits 30..20, then 19..9: a cut to 2^-14 of the score
constexpr int kCutShift[kCutPasses] = {20, 9};      // the lowest bit of each pass's digit
constexpr int kCutPrefixShift[kCutPasses] = {31, 20}; // key >> this == the prefix chosen so far

//! A box x1, y1, x2, y2 in the NMS frame (16-byte aligned: one vector load on the device)
struct alignas(16) Box
{
    float x1, y1, x2, y2;
};

// ---- float arithmetic, rounded to nearest, never contracted to FMA -------------------------------
DNMS_HD float fmul(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
DNMS_HD float fadd(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
DNMS_HD float fsub(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
DNMS_HD float fdiv(float a, float b)
{
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
DNMS_HD float fmin2(float a, float b)
{
    return b < a ? b : a;
}
DNMS_HD float fmax2(float a, float b)
{
    return a < b ? b : a;
}

// ---- half precision ------------------------------------------------------------------------------
//! IEEE binary16 bits -> float (exact). The CPU build's half type is uint16_t.
DNMS_HD float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t x;
    if (e == 0)
    {
        if (m == 0)
        {
            x = sign;
        }
        else
        {
            e = 113;
            while (!(m & 0x400u))
            {
                m <<= 1;
                --e;
            }
            x = sign | (e << 23) | ((m & 0x3ffu) << 13);
        }
    }
    else if (e == 31)
    {
        x = sign | 0x7f800000u | (m << 13);
    }
    else
    {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

//! float -> IEEE binary16 bits, round to nearest even (as numpy's float16 cast)
inline uint16_t floatToHalfBits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return static_cast<uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax >= 0x47800000u) // >= 65536: infinity
        return static_cast<uint16_t>(sign | 0x7c00u);
    if (ax < 0x33000000u) // < 2^-25: zero (2^-25 itself ties to even zero below)
        return static_cast<uint16_t>(sign);
    uint32_t const e = ax >> 23;
    if (ax < 0x38800000u) // half subnormal
    {
        uint32_t const mant = (ax & 0x7fffffu) | 0x800000u;
        uint32_t const shift = 126u - e;
        uint32_t h = mant >> shift;
        uint32_t const rem = mant & ((1u << shift) - 1u);
        uint32_t const halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u)))
            ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((e - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    uint32_t const rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        ++h; // a carry into the exponent is the correct rounding (up to infinity)
    return static_cast<uint16_t>(sign | h);
}

DNMS_HD float toFloat(float v)
{
    return v;
}
DNMS_HD float toFloat(uint16_t v)
{
    return halfBitsToFloat(v);
}
#if defined(__CUDACC__)
DNMS_HD float toFloat(__half v)
{
    return __half2float(v);
}
#endif

// ---- DIoU ----------------------------------------------------------------------------------------
//! box (x1, y1, x2, y2 in input pixels) divided by the NMS frame (w, h): x / w, y / h
DNMS_HD Box normalizeBox(float x1, float y1, float x2, float y2, float w, float h)
{
    Box r;
    r.x1 = fdiv(x1, w);
    r.y1 = fdiv(y1, h);
    r.x2 = fdiv(x2, w);
    r.y2 = fdiv(y2, h);
    return r;
}

DNMS_HD float boxArea(Box const& a)
{
    return fmul(fsub(a.x2, a.x1), fsub(a.y2, a.y1));
}

//! IoU of a and b; 0 when the intersection or the union is 0 (darknet box_iou)
DNMS_HD float iou(Box const& a, Box const& b)
{
    float iw = fsub(fmin2(a.x2, b.x2), fmax2(a.x1, b.x1));
    float ih = fsub(fmin2(a.y2, b.y2), fmax2(a.y1, b.y1));
    iw = fmax2(iw, 0.0f);
    ih = fmax2(ih, 0.0f);
    float const inter = fmul(iw, ih);
    float const uni = fsub(fadd(boxArea(a), boxArea(b)), inter);
    return (inter != 0.0f && uni != 0.0f) ? fdiv(inter, uni) : 0.0f;
}

//! (d^2 / c^2) ** beta: d = distance of the centres, c = diagonal of the enclosing box; 0 when c = 0
DNMS_HD float diouPenalty(Box const& a, Box const& b, float beta)
{
    float const cw = fsub(fmax2(a.x2, b.x2), fmin2(a.x1, b.x1));
    float const ch = fsub(fmax2(a.y2, b.y2), fmin2(a.y1, b.y1));
    float const c2 = fadd(fmul(cw, cw), fmul(ch, ch));
    float const dx = fsub(fadd(a.x1, a.x2), fadd(b.x1, b.x2));
    float const dy = fsub(fadd(a.y1, a.y2), fadd(b.y1, b.y2));
    float const d2 = fmul(fadd(fmul(dx, dx), fmul(dy, dy)), 0.25f);
    float const ratio = c2 != 0.0f ? fdiv(d2, c2) : 0.0f;
    // pow in double: the device's and the C library's double pow agree to far below float rounding
    return static_cast<float>(pow(static_cast<double>(ratio), static_cast<double>(beta)));
}

//! Does the kept box a suppress the later box b? IoU(a, b) [- penalty] > thr
DNMS_HD bool suppresses(Box const& a, Box const& b, float thr, bool useDiou, float beta)
{
    float const v = iou(a, b);
    if (!(v > thr))
        return false; // the penalty is >= 0: only pairs above the threshold in IoU can pass
    if (!useDiou)
        return true;
    return fsub(v, diouPenalty(a, b, beta)) > thr;
}

// ---- stage bodies --------------------------------------------------------------------------------
//! A (box, class) pair is a candidate when its score > thr (thr already rounded to the input type)
template <typename T>
DNMS_HD bool isCandidate(T score, float thr)
{
    return toFloat(score) > thr;
}

//! The bits of a score as float32: for candidates (> thr >= 0) an unsigned order equal to the value order
template <typename T>
DNMS_HD uint32_t scoreBits(T score)
{
    float const f = toFloat(score);
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

//! Row i of a tile's suppression matrix: bit j (j > i) set when tile[i] suppresses tile[j]
DNMS_HD void tileMaskRow(
    Box const* tile, int i, int n, float thr, bool useDiou, float beta, uint64_t* row /* kTileWords */)
{
    for (int w = 0; w < kTileWords; ++w)
        row[w] = 0;
    Box const a = tile[i];
    for (int j = i + 1; j < n; ++j)
    {
        if (suppresses(a, tile[j], thr, useDiou, beta))
            row[j >> 6] |= 1ull << (j & 63);
    }
}

//! Greedy NMS inside a tile (sorted by score): keep i unless a kept earlier box suppresses it or it
//! was suppressed before the tile (alive[i] == 0). Writes the kept tile indices, returns their count.
DNMS_HD int resolveTile(uint64_t const* mask /* n x kTileWords */, unsigned char const* alive, int n, int32_t* kept)
{
    uint64_t removed[kTileWords];
    for (int w = 0; w < kTileWords; ++w)
        removed[w] = 0;
    int k = 0;
    for (int i = 0; i < n; ++i)
    {
        if (!alive[i] || ((removed[i >> 6] >> (i & 63)) & 1ull))
            continue;
        kept[k++] = i;
        for (int w = i >> 6; w < kTileWords; ++w)
            removed[w] |= mask[i * kTileWords + w];
    }
    return k;
}

//! Is b suppressed by any of the n boxes kept in earlier tiles of its group?
DNMS_HD bool suppressedByAny(Box const* kept, int n, Box const& b, float thr, bool useDiou, float beta)
{
    for (int k = 0; k < n; ++k)
    {
        if (suppresses(kept[k], b, thr, useDiou, beta))
            return true;
    }
    return false;
}

//! First position in sorted keys[0, n) whose key is >= v
DNMS_HD int lowerBound(uint32_t const* keys, int n, uint32_t v)
{
    int lo = 0;
    int hi = n;
    while (lo < hi)
    {
        int const mid = lo + (hi - lo) / 2;
        if (keys[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

//! Output row r of image b: detection r (flat index idx = n * C + c of the input) or padding
template <typename T>
DNMS_HD void writeDetection(T const* boxes, T const* scores, int N, int C, int K, int b, int r, bool valid, int32_t idx,
    T* detBoxes, T* detScores, int32_t* detClasses)
{
    size_t const o = static_cast<size_t>(b) * K + r;
    if (valid)
    {
        int const n = idx / C;
        int const c = idx - n * C;
        T const* src = boxes + (static_cast<size_t>(b) * N + n) * 4;
        for (int k = 0; k < 4; ++k)
            detBoxes[o * 4 + k] = src[k];
        detScores[o] = scores[static_cast<size_t>(b) * N * C + idx];
        detClasses[o] = c;
    }
    else
    {
        for (int k = 0; k < 4; ++k)
            detBoxes[o * 4 + k] = T{};
        detScores[o] = T{};
        detClasses[o] = -1;
    }
}

// ---- parameters and workspace (host side) --------------------------------------------------------
//! What the stages need, derived once from DiouNMSParameters
struct Derived
{
    int B, N, C, NC;   // batch, boxes, classes, N * C
    int T;             // candidates per image entering NMS: min(top_k, N * C)
    int K;             // max_output_boxes
    int G;             // NMS groups per image: C, or 1 when class agnostic
    int classBits;     // radix bits of a class id
    int tilesPerImage; // candidate-selection blocks per image
    float scoreThr;    // score_threshold rounded to the input type
    float iouThr;
    float beta; // effective DIoU exponent (darknet: 0.6 for greedynms, beta_nms for diounms)
    bool useDiou;
    bool agnostic;
    bool isHalf;
    bool perImageFrame;
    float frameW, frameH; // the frame when not per image
};

//! Validate p and derive the stage parameters; DIOU_NMS_SUCCESS or DIOU_NMS_BAD_PARAM
inline int derive(DiouNMSParameters const* p, Derived* d)
{
    if (!p || !d)
        return DIOU_NMS_BAD_PARAM;
    if (p->batchSize < 0 || p->batchSize > 65535 || p->numBoxes < 0 || p->numClasses < 0 || p->maxOutputBoxes < 1
        || p->topK < 1)
        return DIOU_NMS_BAD_PARAM; // 65535: the CUDA grid's y dimension (one row per image)
    if (p->nmsKind < DIOU_NMS_KIND_DEFAULT || p->nmsKind > DIOU_NMS_KIND_DIOU)
        return DIOU_NMS_BAD_PARAM;
    if (p->dataType != DIOU_NMS_TYPE_FLOAT && p->dataType != DIOU_NMS_TYPE_HALF)
        return DIOU_NMS_BAD_PARAM;
    if (!(p->scoreThreshold >= 0.0f && p->scoreThreshold <= 1.0f) || !(p->iouThreshold >= 0.0f && p->iouThreshold <= 1.0f))
        return DIOU_NMS_BAD_PARAM;
    if (p->nmsKind == DIOU_NMS_KIND_DIOU && !(p->betaNms > 0.0f && p->betaNms < INFINITY))
        return DIOU_NMS_BAD_PARAM;
    int64_t const nc = static_cast<int64_t>(p->numBoxes) * p->numClasses;
    int64_t const total = nc * p->batchSize;
    int64_t const maxItems = 0x7fffffff - kScanTile;
    if (nc > maxItems || total > maxItems || static_cast<int64_t>(p->maxOutputBoxes) * p->batchSize > maxItems)
        return DIOU_NMS_BAD_PARAM;
    d->B = p->batchSize;
    d->N = p->numBoxes;
    d->C = p->numClasses;
    d->NC = static_cast<int>(nc);
    d->T = static_cast<int>(nc < p->topK ? nc : p->topK);
    if (static_cast<int64_t>(d->T) * d->B > maxItems)
        return DIOU_NMS_BAD_PARAM;
    d->K = p->maxOutputBoxes;
    d->agnostic = p->classAgnostic != 0;
    d->G = d->agnostic ? 1 : d->C;
    d->classBits = 1;
    while (d->classBits < 31 && (1 << d->classBits) < d->C)
        ++d->classBits;
    d->tilesPerImage = static_cast<int>((nc + kScanTile - 1) / kScanTile);
    d->isHalf = p->dataType == DIOU_NMS_TYPE_HALF;
    // numpy compares a float16 array with a Python float in float16 (NEP 50): round the threshold
    d->scoreThr = d->isHalf ? halfBitsToFloat(floatToHalfBits(p->scoreThreshold)) : p->scoreThreshold;
    d->iouThr = p->iouThreshold;
    d->useDiou = p->nmsKind != DIOU_NMS_KIND_DEFAULT;
    d->beta = p->nmsKind == DIOU_NMS_KIND_GREEDY ? DIOU_NMS_GREEDY_BETA : p->betaNms;
    d->perImageFrame = p->frameMode == DIOU_NMS_FRAME_PER_IMAGE;
    d->frameW = p->inputWidth > 0 ? static_cast<float>(p->inputWidth) : 1.0f;
    d->frameH = p->inputHeight > 0 ? static_cast<float>(p->inputHeight) : 1.0f;
    return DIOU_NMS_SUCCESS;
}

//! Byte offsets of the workspace arrays (each 256-byte aligned), for both builds
struct Layout
{
    // candidate selection: per-block counts and their exclusive scan (B * tilesPerImage + 1)
    size_t tileCount, tileOffset;
    // the top_k cut (CUDA build): digit histogram (B * kDigits), per image the rank still needed, the digits
    // chosen so far, the cut (score bits >= cut stay candidates)
    size_t cutHist, cutNeed, cutPrefix, cutBits;
    // per image (B each): sort-1 segments, top-k list segments, top count, kept count
    size_t seg1Begin, seg1End, listBegin, listEnd, topCount, keptCount;
    // sort 1 double buffers (B * N * C): score keys, flat-index values
    size_t candKey[2], candVal[2];
    // the top-k lists (B * T): class keys (sort 2), flat indices, sort-3 keys (score or suppressed)
    size_t listKey[2], listVal[2], key3[2];
    // the top-k lists (B * T): boxes in the NMS frame, scores, kept positions per group
    size_t listBox, listScore, keptList;
    size_t cubTemp;
    size_t total;
};

inline size_t alignUp(size_t v)
{
    return (v + 255) & ~static_cast<size_t>(255);
}

//! The workspace layout; cubTempBytes = the CUDA build's sort/scan scratch (0 for the CPU build)
inline Layout layout(Derived const& d, size_t cubTempBytes)
{
    Layout L;
    size_t o = 0;
    auto take = [&o](size_t bytes) {
        size_t const at = o;
        o += alignUp(bytes > 0 ? bytes : 1);
        return at;
    };
    size_t const B = static_cast<size_t>(d.B);
    size_t const tiles = B * static_cast<size_t>(d.tilesPerImage) + 1;
    size_t const all = B * static_cast<size_t>(d.NC);
    size_t const list = B * static_cast<size_t>(d.T);
    L.tileCount = take(tiles * 4);
    L.tileOffset = take(tiles * 4);
    L.cutHist = take(B * kDigits * 4);
    L.cutNeed = take(B * 4);
    L.cutPrefix = take(B * 4);
    L.cutBits = take(B * 4);
    L.seg1Begin = take(B * 4);
    L.seg1End = take(B * 4);
    L.listBegin = take(B * 4);
    L.listEnd = take(B * 4);
    L.topCount = take(B * 4);
    L.keptCount = take(B * 4);
    for (int k = 0; k < 2; ++k)
    {
        L.candKey[k] = take(all * 4);
        L.candVal[k] = take(all * 4);
    }
    for (int k = 0; k < 2; ++k)
    {
        L.listKey[k] = take(list * 4);
        L.listVal[k] = take(list * 4);
        L.key3[k] = take(list * 4);
    }
    L.listBox = take(list * sizeof(Box));
    L.listScore = take(list * 4);
    L.keptList = take(list * 4);
    L.cubTemp = take(cubTempBytes);
    L.total = o;
    return L;
}

template <typename P>
inline P* at(void* workspace, size_t offset)
{
    return reinterpret_cast<P*>(static_cast<char*>(workspace) + offset);
}

} // namespace diou_nms

#endif // DIOU_NMS_COMMON_CUH
