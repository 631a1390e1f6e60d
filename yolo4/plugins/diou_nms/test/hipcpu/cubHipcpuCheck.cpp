/*
 * C entry points over the CUB stand-in (cub_hipcpu.h), appended to the HIP-CPU build of the kernels
 * (yolo4.plugins.build.build_hipcpu_library("diou_nms", ...): one compile), so that tests/test_plugin_hipcpu.py can check
 * it against numpy: the block primitives inside a real launch of 256-thread blocks, the device scan and the
 * segmented radix sorts through the same DoubleBuffer calls the kernels make. Host pointers throughout;
 * every function waits for its launches before returning.
 */
#include <cub/cub.cuh>

#include <cstdint>

namespace cub_check
{
constexpr int kCheckThreads = 256;

__global__ void blockPrimitives(int const* in, int* scan, int* reduce, int* scan2, int* aggregate)
{
    using BlockReduce = cub::BlockReduce<int, kCheckThreads>;
    using BlockScan = cub::BlockScan<int, kCheckThreads>;
    __shared__ typename BlockReduce::TempStorage rtmp;
    __shared__ typename BlockScan::TempStorage stmp;
    int const i = blockIdx.x * kCheckThreads + threadIdx.x;
    int const total = BlockReduce(rtmp).Sum(in[i]);
    if (threadIdx.x == 0)
        reduce[blockIdx.x] = total;
    int out;
    BlockScan(stmp).ExclusiveSum(in[i], out);
    scan[i] = out;
    __syncthreads(); // TempStorage reused (CUB: the caller synchronizes)
    int agg = 0;
    BlockScan(stmp).ExclusiveSum(in[i], out, agg);
    scan2[i] = out;
    aggregate[i] = agg;
}

template <typename K>
int sortPairs(int descending, K* keys, K* keysAlt, int32_t* vals, int32_t* valsAlt, int n, int segments,
    int32_t const* begin, int32_t const* end, int beginBit, int endBit, size_t tempBytes, int* selector)
{
    cub::DoubleBuffer<K> k(keys, keysAlt);
    cub::DoubleBuffer<int32_t> v(vals, valsAlt);
    size_t need = 0;
    cudaError_t e = descending
        ? cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, need, k, v, n, segments, begin, end, beginBit, endBit)
        : cub::DeviceSegmentedRadixSort::SortPairs(nullptr, need, k, v, n, segments, begin, end, beginBit, endBit);
    if (e != cudaSuccess)
        return -1000 - static_cast<int>(e);
    if (k.selector != 0 || v.selector != 0)
        return -2; // a size-only call changes nothing
    size_t bytes = tempBytes ? tempBytes : need;
    void* temp = nullptr;
    if (hipMalloc(&temp, bytes) != hipSuccess)
        return -3;
    e = descending ? cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, bytes, k, v, n, segments, begin, end,
            beginBit, endBit, nullptr)
                   : cub::DeviceSegmentedRadixSort::SortPairs(temp, bytes, k, v, n, segments, begin, end, beginBit,
                       endBit, nullptr);
    hipDeviceSynchronize();
    hipFree(temp);
    *selector = k.selector;
    if (k.selector != v.selector)
        return -4;
    return static_cast<int>(e);
}
} // namespace cub_check

extern "C"
{

//! scan[i] = exclusive prefix sum within i's block of 256, reduce[b] = block b's sum; scan2/aggregate: the
//! block_aggregate overload (the same scan, and the block's sum in every thread)
__attribute__((visibility("default"))) int cubBlockCheck(
    int const* in, int blocks, int* scan, int* reduce, int* scan2, int* aggregate)
{
    hipLaunchKernelGGL(cub_check::blockPrimitives, dim3(blocks), dim3(cub_check::kCheckThreads), 0, nullptr, in, scan,
        reduce, scan2, aggregate);
    return static_cast<int>(hipDeviceSynchronize());
}

//! out = exclusive prefix sum of in (out == in allowed); returns the status, *need the size-only answer
__attribute__((visibility("default"))) int cubScanCheck(int32_t const* in, int32_t* out, int n, size_t* need)
{
    *need = 0;
    cudaError_t e = cub::DeviceScan::ExclusiveSum(nullptr, *need, in, out, n);
    if (e != cudaSuccess)
        return static_cast<int>(e);
    void* temp = nullptr;
    hipMalloc(&temp, *need ? *need : 1);
    size_t bytes = *need;
    e = cub::DeviceScan::ExclusiveSum(temp, bytes, in, out, n, nullptr);
    hipDeviceSynchronize();
    hipFree(temp);
    return static_cast<int>(e);
}

//! segmented pair sort of float keys (keyType 0) or uint32 keys (1) through DoubleBuffers; *selector: where
//! the result is (0: keys/vals, 1: the alternates); tempBytes 0: the size the size-only call gave
__attribute__((visibility("default"))) int cubSortCheck(int keyType, int descending, void* keys, void* keysAlt,
    int32_t* vals, int32_t* valsAlt, int n, int segments, int32_t const* begin, int32_t const* end, int beginBit,
    int endBit, size_t tempBytes, int* selector)
{
    if (keyType == 0)
        return cub_check::sortPairs(descending, static_cast<float*>(keys), static_cast<float*>(keysAlt), vals, valsAlt, n,
            segments, begin, end, beginBit, endBit, tempBytes, selector);
    return cub_check::sortPairs(descending, static_cast<uint32_t*>(keys), static_cast<uint32_t*>(keysAlt), vals, valsAlt, n,
        segments, begin, end, beginBit, endBit, tempBytes, selector);
}

} // extern "C"
