/*
 * DIoU-NMS on the CPU: the C API of diouNMSKernels.h with the CUDA build's stages, workspace layout
 * and shared functions (diouNMSCommon.cuh), run one element after another. Not part of the plugin
 * library: the test suite builds it with g++ only (no CUDA) and checks it against the numpy
 * reference, which is how the kernels' arithmetic and stage structure are verified without a GPU.
 *
 *   g++ -std=c++17 -O2 -ffp-contract=off -fPIC -shared -DDIOU_NMS_HOST_ONLY diouNMSHost.cpp -o libdiou_nms_host.so
 *
 * The stream argument is ignored and every pointer is a host pointer. The CUB radix sorts of the
 * CUDA build are stable; here std::stable_sort stands in for them.
 */
#include "diouNMSCommon.cuh"
#include "diouNMSKernels.h"

#include <algorithm>
#include <numeric>
#include <vector>

using namespace diou_nms;

namespace
{

//! Stable sort of the pairs (keys, vals)[begin, end) by key (CUB's segmented radix sort, one segment)
template <typename K>
void stableSortPairs(K* keys, int32_t* vals, int begin, int end, bool descending)
{
    int const n = end - begin;
    if (n <= 1)
        return;
    std::vector<int> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    K const* k = keys + begin;
    if (descending)
        std::stable_sort(perm.begin(), perm.end(), [k](int a, int b) { return k[b] < k[a]; });
    else
        std::stable_sort(perm.begin(), perm.end(), [k](int a, int b) { return k[a] < k[b]; });
    std::vector<K> kt(n);
    std::vector<int32_t> vt(n);
    for (int i = 0; i < n; ++i)
    {
        kt[i] = keys[begin + perm[i]];
        vt[i] = vals[begin + perm[i]];
    }
    std::copy(kt.begin(), kt.end(), keys + begin);
    std::copy(vt.begin(), vt.end(), vals + begin);
}

template <typename T>
int run(Derived const& d, T const* boxes, T const* scores, float const* normWH, int32_t* numDetections, T* detBoxes,
    T* detScores, int32_t* detClasses, void* ws)
{
    Layout const L = layout(d, 0);
    int const B = d.B, N = d.N, C = d.C, NC = d.NC, T_ = d.T, K = d.K, tpi = d.tilesPerImage;
    int32_t* tileCount = at<int32_t>(ws, L.tileCount);
    int32_t* tileOffset = at<int32_t>(ws, L.tileOffset);
    int32_t* seg1Begin = at<int32_t>(ws, L.seg1Begin);
    int32_t* seg1End = at<int32_t>(ws, L.seg1End);
    int32_t* topCount = at<int32_t>(ws, L.topCount);
    int32_t* keptCount = at<int32_t>(ws, L.keptCount);
    float* candKey = at<float>(ws, L.candKey[0]);
    int32_t* candVal = at<int32_t>(ws, L.candVal[0]);
    uint32_t* listKey = at<uint32_t>(ws, L.listKey[0]);
    int32_t* listVal = at<int32_t>(ws, L.listVal[0]);
    float* key3 = at<float>(ws, L.key3[0]);
    Box* listBox = at<Box>(ws, L.listBox);
    float* listScore = at<float>(ws, L.listScore);
    int32_t* keptList = at<int32_t>(ws, L.keptList);

    // 1. candidates: count per scan tile, exclusive scan, scatter in input order
    for (int b = 0; b < B; ++b)
    {
        T const* s = scores + static_cast<size_t>(b) * NC;
        for (int t = 0; t < tpi; ++t)
        {
            int cnt = 0;
            for (int i = t * kScanTile; i < std::min(NC, (t + 1) * kScanTile); ++i)
                cnt += isCandidate(s[i], d.scoreThr) ? 1 : 0;
            tileCount[b * tpi + t] = cnt;
        }
    }
    tileCount[B * tpi] = 0;
    int32_t run = 0;
    for (int i = 0; i <= B * tpi; ++i)
    {
        tileOffset[i] = run;
        run += tileCount[i];
    }
    for (int b = 0; b < B; ++b)
    {
        T const* s = scores + static_cast<size_t>(b) * NC;
        int32_t o = tileOffset[b * tpi];
        for (int i = 0; i < NC; ++i)
        {
            if (isCandidate(s[i], d.scoreThr))
            {
                candKey[o] = toFloat(s[i]);
                candVal[o] = i;
                ++o;
            }
        }
        seg1Begin[b] = tileOffset[b * tpi];
        seg1End[b] = tileOffset[(b + 1) * tpi];
        topCount[b] = std::min(seg1End[b] - seg1Begin[b], T_);
        keptCount[b] = 0;
    }

    // 2. sort 1: per image by score, descending, stable (ties: input order n * C + c)
    for (int b = 0; b < B; ++b)
        stableSortPairs(candKey, candVal, seg1Begin[b], seg1End[b], true);

    // 3. the top_k list of each image; sort 2 (per class): by class, stable (score order within)
    for (int b = 0; b < B; ++b)
    {
        for (int i = 0; i < topCount[b]; ++i)
        {
            int32_t const idx = candVal[seg1Begin[b] + i];
            listKey[b * T_ + i] = static_cast<uint32_t>(idx % C);
            listVal[b * T_ + i] = idx;
        }
        if (!d.agnostic)
            stableSortPairs(listKey, listVal, b * T_, b * T_ + topCount[b], false);
    }

    // 4. boxes in the NMS frame, scores, sort-3 keys (suppressed until kept)
    for (int b = 0; b < B; ++b)
    {
        float const fw = d.perImageFrame ? normWH[2 * b] : d.frameW;
        float const fh = d.perImageFrame ? normWH[2 * b + 1] : d.frameH;
        float const w = fw > 0.0f ? fw : 1.0f;
        float const h = fh > 0.0f ? fh : 1.0f;
        for (int i = 0; i < topCount[b]; ++i)
        {
            int const p = b * T_ + i;
            int32_t const idx = listVal[p];
            T const* bx = boxes + (static_cast<size_t>(b) * N + idx / C) * 4;
            listBox[p] = normalizeBox(toFloat(bx[0]), toFloat(bx[1]), toFloat(bx[2]), toFloat(bx[3]), w, h);
            listScore[p] = toFloat(scores[static_cast<size_t>(b) * NC + idx]);
            key3[p] = kSuppressedKey;
        }
    }

    // 5. greedy NMS per (image, group), in tiles: earlier tiles' kept boxes, then the tile's matrix
    std::vector<uint64_t> mask(kTile * kTileWords);
    std::vector<unsigned char> alive(kTile);
    std::vector<int32_t> keptLocal(kTile);
    std::vector<Box> tile(kTile);
    std::vector<Box> keptBoxes;
    for (int b = 0; b < B; ++b)
    {
        int const base = b * T_;
        int const cnt = topCount[b];
        for (int g = 0; g < d.G; ++g)
        {
            int gs = 0;
            int ge = cnt;
            if (!d.agnostic)
            {
                gs = lowerBound(listKey + base, cnt, static_cast<uint32_t>(g));
                ge = lowerBound(listKey + base, cnt, static_cast<uint32_t>(g + 1));
            }
            int nKept = 0;
            keptBoxes.clear();
            for (int t0 = gs; t0 < ge; t0 += kTile)
            {
                int const tn = std::min(kTile, ge - t0);
                for (int i = 0; i < tn; ++i)
                {
                    tile[i] = listBox[base + t0 + i];
                    alive[i] = suppressedByAny(keptBoxes.data(), nKept, tile[i], d.iouThr, d.useDiou, d.beta) ? 0 : 1;
                }
                for (int i = 0; i < tn; ++i)
                {
                    if (alive[i])
                        tileMaskRow(tile.data(), i, tn, d.iouThr, d.useDiou, d.beta, &mask[i * kTileWords]);
                    else
                        std::fill(&mask[i * kTileWords], &mask[i * kTileWords] + kTileWords, 0);
                }
                int const k = resolveTile(mask.data(), alive.data(), tn, keptLocal.data());
                for (int j = 0; j < k; ++j)
                {
                    int const pos = t0 + keptLocal[j];
                    keptList[base + gs + nKept] = pos;
                    keptBoxes.push_back(listBox[base + pos]);
                    key3[base + pos] = listScore[base + pos];
                    ++nKept;
                }
                if (nKept >= K)
                    break; // as the kernel: later candidates of the group cannot be among the K outputs
            }
            keptCount[b] += nKept;
        }
    }

    // 6. sort 3: per image by key (kept score, or suppressed), descending, stable
    for (int b = 0; b < B; ++b)
        stableSortPairs(key3, listVal, b * T_, b * T_ + topCount[b], true);

    // 7. outputs
    for (int b = 0; b < B; ++b)
    {
        int const numDet = std::min(keptCount[b], K);
        numDetections[b] = numDet;
        for (int r = 0; r < K; ++r)
        {
            bool const valid = r < numDet;
            writeDetection(boxes, scores, N, C, K, b, r, valid, valid ? listVal[b * T_ + r] : 0, detBoxes, detScores,
                detClasses);
        }
    }
    return DIOU_NMS_SUCCESS;
}

} // namespace

extern "C" DIOU_NMS_API size_t diouNMSWorkspaceSize(DiouNMSParameters const* param)
{
    Derived d;
    if (derive(param, &d) != DIOU_NMS_SUCCESS)
        return 0;
    return layout(d, 0).total;
}

extern "C" DIOU_NMS_API int diouNMSLaunch(DiouNMSParameters const* param, void const* boxes, void const* scores,
    float const* normWH, void* numDetections, void* detectionBoxes, void* detectionScores, void* detectionClasses,
    void* workspace, cudaStream_t /*stream*/)
{
    Derived d;
    int const status = derive(param, &d);
    if (status != DIOU_NMS_SUCCESS)
        return status;
    if ((d.B > 0 && (!numDetections || !workspace)) || (d.perImageFrame && d.B > 0 && !normWH))
        return DIOU_NMS_BAD_PARAM;
    if (d.isHalf)
        return run(d, static_cast<uint16_t const*>(boxes), static_cast<uint16_t const*>(scores), normWH,
            static_cast<int32_t*>(numDetections), static_cast<uint16_t*>(detectionBoxes),
            static_cast<uint16_t*>(detectionScores), static_cast<int32_t*>(detectionClasses), workspace);
    return run(d, static_cast<float const*>(boxes), static_cast<float const*>(scores), normWH,
        static_cast<int32_t*>(numDetections), static_cast<float*>(detectionBoxes), static_cast<float*>(detectionScores),
        static_cast<int32_t*>(detectionClasses), workspace);
}
