/*
 * DIoU-NMS on the GPU: all images and classes in one launch sequence on one stream, no host round
 * trip between the stages (every count stays on the device; CUB's segmented sorts take device
 * segment offsets). Nothing newer than sm_70 is used (V100, Xavier's sm_72): plain loads, shared
 * memory, __syncthreads, atomicAdd on int; CUB (shipped with CUDA 11.4 and later) for the scan and
 * the segmented radix sorts.
 *
 * Stages (diouNMSHost.cpp runs the same ones on the CPU, 1a aside; both call diouNMSCommon.cuh):
 *   1a. the top_k cut, when top_k < N * C: a radix select per image (two passes of an 11-bit digit histogram
 *      of the candidates' score bits, one block per image choosing the digit) finds bits `cut` such that
 *      every candidate that can rank among the image's top_k has score bits >= cut, and few others do (those
 *      within 2^-14 of the top_k-th score). Without it, sort 1 (one CUB block per image) sorted every
 *      candidate: at mAP thresholds up to N * C per image (yolov4-416: 852K); with it, about top_k.
 *   1. candidates: every (image, box, class) with score > score_threshold and score bits >= cut, compacted in
 *      input order (count per block, exclusive scan, scatter) -> keys = scores, values = n * C + c
 *   2. sort 1: per image by score, descending, stable (ties keep the input order); the cut keeps every
 *      candidate tied with or above the top_k-th, in input order, so the first top_k are the same as
 *      sorting them all
 *   3. the first min(count, top_k) of each image form its list; sort 2 (per class only): by class,
 *      stable, so each class is a contiguous run in score order
 *   4. the list's boxes divided by the NMS frame, scores, sort-3 keys (= suppressed)
 *   5. greedy NMS, one block per (image, class) (or per image, class agnostic), in tiles of
 *      kTile candidates: a tile's boxes are first checked against the boxes kept in earlier tiles,
 *      then the tile's suppression bit matrix is built in parallel and resolved in order; a group
 *      stops after the tile in which it reaches K kept boxes (K = max_output_boxes): its later
 *      candidates rank below those K in the output order (score, then class, then input order), so
 *      they cannot be output, and the image keeps >= K boxes either way (the outputs are the same
 *      bit for bit; this bounds the class-agnostic single-block NMS at mAP thresholds)
 *   6. sort 3: per image by (kept ? score : -1), descending, stable -> the detections in score order,
 *      ties by class then input order (as the reference)
 *   7. outputs: the first min(kept, K) detections of each image, the rest padded
 * Workspace: see diou_nms::layout (about 16 * B * N * C + 40 * B * min(top_k, N * C) + 8 KiB * B bytes + CUB's).
 */
#include "diouNMSCommon.cuh"
#include "diouNMSKernels.h"

#include <cub/cub.cuh>
#include <cuda_fp16.h>

using namespace diou_nms;

namespace
{

constexpr int kThreads = 256; // threads of the element-wise kernels

//! Stage 1a, when top_k < N * C: each image's rank still to place (top_k), no digits chosen, no cut yet
__global__ void cutInit(int B, int T, int32_t* cutNeed, uint32_t* cutPrefix)
{
    int const b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B)
        return;
    cutNeed[b] = T;
    cutPrefix[b] = 0;
}

//! Stage 1a, one radix-select pass: per image, the histogram of the digit (score bits >> shift) & (kDigits - 1)
//! over the candidates whose higher bits equal the prefix chosen so far (a block-private histogram in shared
//! memory, added into the image's global one). Images already settled (cutNeed <= 0) are skipped.
template <typename T>
__global__ void digitHistogram(T const* __restrict__ scores, int NC, float thr, int shift, int prefixShift,
    int32_t const* cutNeed, uint32_t const* cutPrefix, int32_t* hist)
{
    __shared__ int32_t local[kDigits];
    int const b = blockIdx.y;
    if (cutNeed[b] <= 0)
        return; // uniform across the block
    for (int i = threadIdx.x; i < kDigits; i += blockDim.x)
        local[i] = 0;
    __syncthreads();
    uint32_t const prefix = cutPrefix[b];
    T const* s = scores + static_cast<size_t>(b) * NC;
    int const first = blockIdx.x * kScanTile;
    for (int k = threadIdx.x; k < kScanTile; k += blockDim.x)
    {
        int const i = first + k;
        if (i < NC && isCandidate(s[i], thr))
        {
            uint32_t const key = scoreBits(s[i]);
            if ((key >> prefixShift) == prefix)
                atomicAdd(&local[(key >> shift) & (kDigits - 1)], 1);
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kDigits; i += blockDim.x)
    {
        if (local[i] != 0)
            atomicAdd(&hist[b * kDigits + i], local[i]);
    }
}

constexpr int kSelectThreads = 256;
constexpr int kSelectPer = kDigits / kSelectThreads; // digits per thread

//! Stage 1a, after each histogram pass: one block per image finds the digit d holding the cutNeed-th largest
//! remaining key (the digits above d hold fewer keys, d and above at least that many); the prefix becomes
//! (prefix << kDigitBits) | d, cutNeed the rank left inside d, and the cut prefix << shift: every key that
//! ranks at or above the top_k-th has bits >= the cut. An image with at most cutNeed keys needs no cut
//! (cutNeed = 0, the cut stays 0).
__global__ void __launch_bounds__(kSelectThreads) selectDigit(
    int32_t const* hist, int shift, int32_t* cutNeed, uint32_t* cutPrefix, uint32_t* cutBits)
{
    using BlockScan = cub::BlockScan<int, kSelectThreads>;
    __shared__ typename BlockScan::TempStorage tmp;
    int const b = blockIdx.x;
    int const need = cutNeed[b];
    if (need <= 0)
        return; // uniform across the block
    int32_t const* h = hist + b * kDigits;
    int const hi = kDigits - 1 - static_cast<int>(threadIdx.x) * kSelectPer; // thread order = descending digits
    int sum = 0;
    for (int k = 0; k < kSelectPer; ++k)
        sum += h[hi - k];
    int above = 0;
    int total = 0;
    BlockScan(tmp).ExclusiveSum(sum, above, total);
    if (total <= need)
    {
        if (threadIdx.x == 0)
            cutNeed[b] = 0; // every remaining key is needed: the cut stays as it is (0 after the first pass)
        return;
    }
    if (above < need && need <= above + sum)
    {
        int acc = above;
        for (int k = 0; k < kSelectPer; ++k)
        {
            int const c = h[hi - k];
            if (acc + c >= need)
            {
                uint32_t const prefix = (cutPrefix[b] << kDigitBits) | static_cast<uint32_t>(hi - k);
                cutPrefix[b] = prefix;
                cutBits[b] = prefix << shift;
                cutNeed[b] = need - acc;
                break;
            }
            acc += c;
        }
    }
}

template <typename T>
__global__ void countCandidates(
    T const* __restrict__ scores, int NC, int tilesPerImage, float thr, uint32_t const* cutBits, int32_t* tileCount)
{
    using BlockReduce = cub::BlockReduce<int, kScanThreads>;
    __shared__ typename BlockReduce::TempStorage tmp;
    int const b = blockIdx.y;
    int const t = blockIdx.x;
    T const* s = scores + static_cast<size_t>(b) * NC;
    uint32_t const cut = cutBits[b];
    int const first = t * kScanTile + threadIdx.x * kScanItems;
    int cnt = 0;
#pragma unroll
    for (int k = 0; k < kScanItems; ++k)
    {
        int const i = first + k;
        if (i < NC && isCandidate(s[i], thr) && scoreBits(s[i]) >= cut)
            ++cnt;
    }
    int const total = BlockReduce(tmp).Sum(cnt);
    if (threadIdx.x == 0)
        tileCount[b * tilesPerImage + t] = total;
}

template <typename T>
__global__ void scatterCandidates(T const* __restrict__ scores, int NC, int tilesPerImage, float thr,
    uint32_t const* cutBits, int32_t const* tileOffset, float* candKey, int32_t* candVal)
{
    using BlockScan = cub::BlockScan<int, kScanThreads>;
    __shared__ typename BlockScan::TempStorage tmp;
    int const b = blockIdx.y;
    int const t = blockIdx.x;
    T const* s = scores + static_cast<size_t>(b) * NC;
    uint32_t const cut = cutBits[b];
    int const first = t * kScanTile + threadIdx.x * kScanItems;
    bool flag[kScanItems];
    float value[kScanItems];
    int cnt = 0;
#pragma unroll
    for (int k = 0; k < kScanItems; ++k)
    {
        int const i = first + k;
        value[k] = i < NC ? toFloat(s[i]) : 0.0f;
        flag[k] = i < NC && isCandidate(s[i], thr) && scoreBits(s[i]) >= cut;
        cnt += flag[k] ? 1 : 0;
    }
    int offset;
    BlockScan(tmp).ExclusiveSum(cnt, offset);
    offset += tileOffset[b * tilesPerImage + t];
#pragma unroll
    for (int k = 0; k < kScanItems; ++k)
    {
        if (flag[k])
        {
            candKey[offset] = value[k];
            candVal[offset] = first + k;
            ++offset;
        }
    }
}

__global__ void imageSegments(int B, int T, int tilesPerImage, int32_t const* tileOffset, int32_t* seg1Begin,
    int32_t* seg1End, int32_t* listBegin, int32_t* listEnd, int32_t* topCount, int32_t* keptCount)
{
    int const b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B)
        return;
    int32_t const begin = tileOffset[b * tilesPerImage];
    int32_t const end = tileOffset[(b + 1) * tilesPerImage];
    int32_t const top = min(end - begin, T);
    seg1Begin[b] = begin;
    seg1End[b] = end;
    listBegin[b] = b * T;
    listEnd[b] = b * T + top;
    topCount[b] = top;
    keptCount[b] = 0;
}

__global__ void gatherTop(int T, int C, int32_t const* seg1Begin, int32_t const* topCount, int32_t const* sortedVal,
    uint32_t* listKey, int32_t* listVal)
{
    int const b = blockIdx.y;
    int const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= topCount[b])
        return;
    int32_t const idx = sortedVal[seg1Begin[b] + i];
    listKey[b * T + i] = static_cast<uint32_t>(idx % C);
    listVal[b * T + i] = idx;
}

template <typename TT>
__global__ void prepareList(TT const* __restrict__ boxes, TT const* __restrict__ scores, float const* normWH, int N,
    int C, int T, float frameW, float frameH, int32_t const* topCount, int32_t const* listVal, Box* listBox,
    float* listScore, float* key3)
{
    int const b = blockIdx.y;
    int const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= topCount[b])
        return;
    float w = frameW;
    float h = frameH;
    if (normWH)
    {
        w = normWH[2 * b] > 0.0f ? normWH[2 * b] : 1.0f;
        h = normWH[2 * b + 1] > 0.0f ? normWH[2 * b + 1] : 1.0f;
    }
    int const p = b * T + i;
    int32_t const idx = listVal[p];
    TT const* bx = boxes + (static_cast<size_t>(b) * N + idx / C) * 4;
    listBox[p] = normalizeBox(toFloat(bx[0]), toFloat(bx[1]), toFloat(bx[2]), toFloat(bx[3]), w, h);
    listScore[p] = toFloat(scores[static_cast<size_t>(b) * N * C + idx]);
    key3[p] = kSuppressedKey;
}

//! One block (kTile threads) per (group, image): greedy NMS of the group's run of the list, stopped once the
//! group has kept K boxes (see stage 5 above)
__global__ void __launch_bounds__(kTile) nmsGroups(int T, int K, bool agnostic, float thr, bool useDiou, float beta,
    uint32_t const* classKeys, Box const* listBox, float const* listScore, int32_t const* topCount,
    int32_t* keptList, float* key3, int32_t* keptCount)
{
    __shared__ Box tile[kTile];
    __shared__ Box kept[kTile];
    __shared__ uint64_t mask[kTile * kTileWords];
    __shared__ unsigned char alive[kTile];
    __shared__ int32_t keptLocal[kTile];
    __shared__ int nKept;
    __shared__ int nNew;

    int const g = blockIdx.x;
    int const b = blockIdx.y;
    int const tid = threadIdx.x;
    int const base = b * T;
    int const cnt = topCount[b];
    int gs = 0;
    int ge = cnt;
    if (!agnostic)
    {
        gs = lowerBound(classKeys + base, cnt, static_cast<uint32_t>(g));
        ge = lowerBound(classKeys + base, cnt, static_cast<uint32_t>(g + 1));
    }
    if (gs >= ge)
        return; // uniform across the block
    if (tid == 0)
        nKept = 0;
    __syncthreads();

    for (int t0 = gs; t0 < ge; t0 += kTile)
    {
        int const tn = min(kTile, ge - t0);
        if (tid < tn)
            tile[tid] = listBox[base + t0 + tid];
        bool ok = tid < tn;
        int const before = nKept;
        // boxes kept in earlier tiles of the group, kTile at a time through shared memory
        for (int k0 = 0; k0 < before; k0 += kTile)
        {
            int const kn = min(kTile, before - k0);
            __syncthreads();
            if (tid < kn)
                kept[tid] = listBox[base + keptList[base + gs + k0 + tid]];
            __syncthreads();
            if (ok)
                ok = !suppressedByAny(kept, kn, tile[tid], thr, useDiou, beta);
        }
        alive[tid] = ok ? 1 : 0;
        __syncthreads();
        // the tile's suppression matrix, one row per thread (rows of suppressed boxes stay empty)
        if (tid < tn && ok)
        {
            tileMaskRow(tile, tid, tn, thr, useDiou, beta, &mask[tid * kTileWords]);
        }
        else
        {
#pragma unroll
            for (int w = 0; w < kTileWords; ++w)
                mask[tid * kTileWords + w] = 0;
        }
        __syncthreads();
        // greedy in score order: a few word operations per candidate, one thread
        if (tid == 0)
            nNew = resolveTile(mask, alive, tn, keptLocal);
        __syncthreads();
        int const added = nNew;
        if (tid < added)
        {
            int const pos = t0 + keptLocal[tid];
            keptList[base + gs + before + tid] = pos;
            key3[base + pos] = listScore[base + pos];
        }
        __syncthreads(); // keptList written before the next tile reads it; nKept read by all
        if (tid == 0)
            nKept = before + added;
        __syncthreads();
        if (nKept >= K)
            break; // uniform across the block: every thread reads nKept after the barrier
    }
    if (tid == 0)
        atomicAdd(keptCount + b, nKept);
}

template <typename TT>
__global__ void writeOutputs(TT const* __restrict__ boxes, TT const* __restrict__ scores, int N, int C, int T, int K,
    int32_t const* keptCount, int32_t const* sortedVal, int32_t* numDetections, TT* detBoxes, TT* detScores,
    int32_t* detClasses)
{
    int const b = blockIdx.y;
    int const r = blockIdx.x * blockDim.x + threadIdx.x;
    int const numDet = min(keptCount[b], K);
    if (r == 0)
        numDetections[b] = numDet;
    if (r >= K)
        return;
    bool const valid = r < numDet;
    writeDetection(boxes, scores, N, C, K, b, r, valid, valid ? sortedVal[b * T + r] : 0, detBoxes, detScores,
        detClasses);
}

//! CUB scratch bytes of the scan and the three sorts (the maximum; the calls run one after another)
cudaError_t cubTempBytes(Derived const& d, size_t* bytes)
{
    *bytes = 0;
    int const tiles = d.B * d.tilesPerImage + 1;
    int const all = d.B * d.NC;
    int const list = d.B * d.T;
    size_t s = 0;
    cudaError_t e = cub::DeviceScan::ExclusiveSum(nullptr, s, static_cast<int32_t*>(nullptr),
        static_cast<int32_t*>(nullptr), tiles);
    if (e != cudaSuccess)
        return e;
    *bytes = s;
    cub::DoubleBuffer<float> fk(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> v(nullptr, nullptr);
    cub::DoubleBuffer<uint32_t> uk(nullptr, nullptr);
    int32_t* seg = nullptr; // the offset type of the real calls (same instantiation)
    s = 0;
    e = cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, s, fk, v, all, d.B, seg, seg);
    if (e != cudaSuccess)
        return e;
    *bytes = s > *bytes ? s : *bytes;
    s = 0;
    e = cub::DeviceSegmentedRadixSort::SortPairs(nullptr, s, uk, v, list, d.B, seg, seg, 0, d.classBits);
    if (e != cudaSuccess)
        return e;
    *bytes = s > *bytes ? s : *bytes;
    s = 0;
    e = cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, s, fk, v, list, d.B, seg, seg);
    if (e != cudaSuccess)
        return e;
    *bytes = s > *bytes ? s : *bytes;
    return cudaSuccess;
}

unsigned blocksFor(int n, int threads)
{
    return static_cast<unsigned>((n + threads - 1) / threads);
}

template <typename TT>
cudaError_t run(Derived const& d, TT const* boxes, TT const* scores, float const* normWH, int32_t* numDetections,
    TT* detBoxes, TT* detScores, int32_t* detClasses, void* ws, cudaStream_t stream)
{
    int const B = d.B;
    int const T = d.T;
    int const tpi = d.tilesPerImage;
    if (B == 0)
        return cudaSuccess;
    size_t cubBytes = 0;
    cudaError_t e = cubTempBytes(d, &cubBytes);
    if (e != cudaSuccess)
        return e;
    Layout const L = layout(d, cubBytes);
    int32_t* tileCount = at<int32_t>(ws, L.tileCount);
    int32_t* tileOffset = at<int32_t>(ws, L.tileOffset);
    int32_t* seg1Begin = at<int32_t>(ws, L.seg1Begin);
    int32_t* seg1End = at<int32_t>(ws, L.seg1End);
    int32_t* listBegin = at<int32_t>(ws, L.listBegin);
    int32_t* listEnd = at<int32_t>(ws, L.listEnd);
    int32_t* topCount = at<int32_t>(ws, L.topCount);
    int32_t* keptCount = at<int32_t>(ws, L.keptCount);
    Box* listBox = at<Box>(ws, L.listBox);
    float* listScore = at<float>(ws, L.listScore);
    int32_t* keptList = at<int32_t>(ws, L.keptList);
    void* temp = at<void>(ws, L.cubTemp);
    int32_t* cutHist = at<int32_t>(ws, L.cutHist);
    int32_t* cutNeed = at<int32_t>(ws, L.cutNeed);
    uint32_t* cutPrefix = at<uint32_t>(ws, L.cutPrefix);
    uint32_t* cutBits = at<uint32_t>(ws, L.cutBits);
    cub::DoubleBuffer<float> candKey(at<float>(ws, L.candKey[0]), at<float>(ws, L.candKey[1]));
    cub::DoubleBuffer<int32_t> candVal(at<int32_t>(ws, L.candVal[0]), at<int32_t>(ws, L.candVal[1]));
    cub::DoubleBuffer<uint32_t> listKey(at<uint32_t>(ws, L.listKey[0]), at<uint32_t>(ws, L.listKey[1]));
    cub::DoubleBuffer<int32_t> listVal(at<int32_t>(ws, L.listVal[0]), at<int32_t>(ws, L.listVal[1]));
    cub::DoubleBuffer<float> key3(at<float>(ws, L.key3[0]), at<float>(ws, L.key3[1]));

    // 1a. the top_k cut: only candidates that can be among an image's top_k enter sort 1
    e = cudaMemsetAsync(cutBits, 0, B * sizeof(uint32_t), stream);
    if (e != cudaSuccess)
        return e;
    if (d.T < d.NC)
    {
        cutInit<<<blocksFor(B, kThreads), kThreads, 0, stream>>>(B, T, cutNeed, cutPrefix);
        dim3 const grid(static_cast<unsigned>(tpi), static_cast<unsigned>(B));
        for (int pass = 0; pass < kCutPasses; ++pass)
        {
            e = cudaMemsetAsync(cutHist, 0, static_cast<size_t>(B) * kDigits * sizeof(int32_t), stream);
            if (e != cudaSuccess)
                return e;
            digitHistogram<<<grid, kScanThreads, 0, stream>>>(
                scores, d.NC, d.scoreThr, kCutShift[pass], kCutPrefixShift[pass], cutNeed, cutPrefix, cutHist);
            selectDigit<<<static_cast<unsigned>(B), kSelectThreads, 0, stream>>>(
                cutHist, kCutShift[pass], cutNeed, cutPrefix, cutBits);
        }
    }
    // 1. candidates in input order
    if (d.NC > 0)
    {
        dim3 const grid(static_cast<unsigned>(tpi), static_cast<unsigned>(B));
        countCandidates<<<grid, kScanThreads, 0, stream>>>(scores, d.NC, tpi, d.scoreThr, cutBits, tileCount);
    }
    e = cudaMemsetAsync(tileCount + B * tpi, 0, sizeof(int32_t), stream);
    if (e != cudaSuccess)
        return e;
    size_t bytes = cubBytes;
    e = cub::DeviceScan::ExclusiveSum(temp, bytes, tileCount, tileOffset, B * tpi + 1, stream);
    if (e != cudaSuccess)
        return e;
    if (d.NC > 0)
    {
        dim3 const grid(static_cast<unsigned>(tpi), static_cast<unsigned>(B));
        scatterCandidates<<<grid, kScanThreads, 0, stream>>>(
            scores, d.NC, tpi, d.scoreThr, cutBits, tileOffset, candKey.Current(), candVal.Current());
    }
    imageSegments<<<blocksFor(B, kThreads), kThreads, 0, stream>>>(
        B, T, tpi, tileOffset, seg1Begin, seg1End, listBegin, listEnd, topCount, keptCount);
    if (T > 0)
    {
        // 2. sort 1: score descending per image
        bytes = cubBytes;
        e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
            temp, bytes, candKey, candVal, B * d.NC, B, seg1Begin, seg1End, 0, 32, stream);
        if (e != cudaSuccess)
            return e;
        // 3. top_k list; sort 2: class ascending (stable: score order within a class)
        dim3 const listGrid(blocksFor(T, kThreads), static_cast<unsigned>(B));
        gatherTop<<<listGrid, kThreads, 0, stream>>>(
            T, d.C, seg1Begin, topCount, candVal.Current(), listKey.Current(), listVal.Current());
        if (!d.agnostic)
        {
            bytes = cubBytes;
            e = cub::DeviceSegmentedRadixSort::SortPairs(
                temp, bytes, listKey, listVal, B * T, B, listBegin, listEnd, 0, d.classBits, stream);
            if (e != cudaSuccess)
                return e;
        }
        // 4. boxes in the NMS frame, scores, sort-3 keys
        prepareList<<<listGrid, kThreads, 0, stream>>>(boxes, scores, d.perImageFrame ? normWH : nullptr, d.N, d.C,
            T, d.frameW, d.frameH, topCount, listVal.Current(), listBox, listScore, key3.Current());
        // 5. greedy NMS per (group, image)
        dim3 const nmsGrid(static_cast<unsigned>(d.G), static_cast<unsigned>(B));
        nmsGroups<<<nmsGrid, kTile, 0, stream>>>(T, d.K, d.agnostic, d.iouThr, d.useDiou, d.beta, listKey.Current(),
            listBox, listScore, topCount, keptList, key3.Current(), keptCount);
        // 6. sort 3: kept scores descending (stable)
        bytes = cubBytes;
        e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
            temp, bytes, key3, listVal, B * T, B, listBegin, listEnd, 0, 32, stream);
        if (e != cudaSuccess)
            return e;
    }
    // 7. outputs (keptCount is 0 where nothing was kept)
    dim3 const outGrid(blocksFor(d.K, kThreads), static_cast<unsigned>(B));
    writeOutputs<<<outGrid, kThreads, 0, stream>>>(boxes, scores, d.N, d.C, T, d.K, keptCount, listVal.Current(),
        numDetections, detBoxes, detScores, detClasses);
    return cudaGetLastError();
}

} // namespace

extern "C" DIOU_NMS_API size_t diouNMSWorkspaceSize(DiouNMSParameters const* param)
{
    Derived d;
    if (derive(param, &d) != DIOU_NMS_SUCCESS)
        return 0;
    size_t cubBytes = 0;
    if (cubTempBytes(d, &cubBytes) != cudaSuccess)
    {
        (void) cudaGetLastError(); // no device here: a generous bound instead (about 2 x the sorted items)
        cubBytes = (static_cast<size_t>(d.B) * d.NC + static_cast<size_t>(d.B) * d.T) * 8 + (1u << 20);
    }
    return layout(d, cubBytes).total;
}

extern "C" DIOU_NMS_API int diouNMSLaunch(DiouNMSParameters const* param, void const* boxes, void const* scores,
    float const* normWH, void* numDetections, void* detectionBoxes, void* detectionScores, void* detectionClasses,
    void* workspace, cudaStream_t stream)
{
    Derived d;
    int const status = derive(param, &d);
    if (status != DIOU_NMS_SUCCESS)
        return status;
    if (d.B > 0 && (!numDetections || !workspace || !boxes || !scores || (d.perImageFrame && !normWH)))
        return DIOU_NMS_BAD_PARAM;
    cudaError_t e;
    if (d.isHalf)
        e = run(d, static_cast<__half const*>(boxes), static_cast<__half const*>(scores), normWH,
            static_cast<int32_t*>(numDetections), static_cast<__half*>(detectionBoxes),
            static_cast<__half*>(detectionScores), static_cast<int32_t*>(detectionClasses), workspace, stream);
    else
        e = run(d, static_cast<float const*>(boxes), static_cast<float const*>(scores), normWH,
            static_cast<int32_t*>(numDetections), static_cast<float*>(detectionBoxes),
            static_cast<float*>(detectionScores), static_cast<int32_t*>(detectionClasses), workspace, stream);
    return static_cast<int>(e);
}
