/*
 * A CPU stand-in for the CUB pieces diouNMSKernels.cu uses, for running the unchanged kernels on the CPU
 * through HIP-CPU (the test suite: tests/test_plugin_hipcpu.py). Written from CUB's documented semantics
 * (CUB 1.12, CUDA 11.4, the oldest toolkit the plugin supports), not from its code:
 *
 *   cub::BlockReduce<T, BLOCK_THREADS>::Sum      block-wide sum; the aggregate is valid in thread 0 only
 *   cub::BlockScan<T, BLOCK_THREADS>::ExclusiveSum  block-wide exclusive prefix sum (thread 0 gets 0); the
 *       overload with block_aggregate also gives every thread the block's total
 *   cub::DeviceScan::ExclusiveSum                 device-wide exclusive prefix sum, stream-ordered
 *   cub::DeviceSegmentedRadixSort::SortPairs[Descending] (DoubleBuffer overloads)
 *       per segment [begin[i], end[i]) (offsets read on the device, as CUB does), stable (equal keys keep
 *       their input order, descending too), on the key bits [begin_bit, end_bit) of the radix-ordered key
 *       (floats: sign bit flipped for positives, all bits for negatives; -0.0 ordered as +0.0), the
 *       result in the buffer the DoubleBuffer's selector names afterwards (CUB toggles it per pass: here
 *       once per CUB_HIPCPU_RADIX_BITS-bit digit), the other buffer's items of each segment "may be
 *       altered" (here: overwritten with 0xff bytes), items outside every segment untouched
 *   cub::DoubleBuffer<T>                          d_buffers[2], selector, Current(), Alternate()
 *   every device-wide call: with d_temp_storage == nullptr it only sets temp_storage_bytes and returns
 *       cudaSuccess; with storage smaller than that it returns cudaErrorInvalidValue; otherwise it
 *       enqueues the work on `stream` (a one-thread kernel: ordered after the earlier launches, as on a
 *       GPU) and returns cudaSuccess. The work fills the whole temp storage first (a 0xa5 pattern), so a
 *       workspace layout that overlaps CUB's scratch with live data shows up as wrong outputs, and one too
 *       small as an AddressSanitizer report.
 *
 * Block primitives use threadIdx.x (1-D blocks, as the kernels launch) and __syncthreads() exactly where a
 * correct implementation must wait (after publishing the inputs); none after, as CUB documents that the
 * caller synchronizes before reusing TempStorage.
 */
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#ifndef CUB_HIPCPU_RADIX_BITS
#define CUB_HIPCPU_RADIX_BITS 7
#endif

namespace cub
{

// ---- block-wide ----------------------------------------------------------------------------------
template <typename T, int BLOCK_THREADS>
class BlockReduce
{
public:
    struct TempStorage
    {
        T items[BLOCK_THREADS];
    };
    __device__ explicit BlockReduce(TempStorage& storage)
        : s_(storage)
    {
    }
    //! the block's sum in thread 0; other threads get their own input back (CUB: undefined there)
    __device__ T Sum(T input)
    {
        s_.items[threadIdx.x] = input;
        __syncthreads();
        if (threadIdx.x != 0)
            return input;
        T total = s_.items[0];
        for (int i = 1; i < BLOCK_THREADS; ++i)
            total = total + s_.items[i];
        return total;
    }

private:
    TempStorage& s_;
};

template <typename T, int BLOCK_THREADS>
class BlockScan
{
public:
    struct TempStorage
    {
        T items[BLOCK_THREADS];
    };
    __device__ explicit BlockScan(TempStorage& storage)
        : s_(storage)
    {
    }
    __device__ void ExclusiveSum(T input, T& output)
    {
        s_.items[threadIdx.x] = input;
        __syncthreads();
        T sum{};
        for (unsigned i = 0; i < threadIdx.x; ++i)
            sum = sum + s_.items[i];
        output = sum;
    }
    //! the same, and the block's total in every thread
    __device__ void ExclusiveSum(T input, T& output, T& block_aggregate)
    {
        s_.items[threadIdx.x] = input;
        __syncthreads();
        T sum{};
        T total{};
        for (unsigned i = 0; i < BLOCK_THREADS; ++i)
        {
            if (i < threadIdx.x)
                sum = sum + s_.items[i];
            total = total + s_.items[i];
        }
        output = sum;
        block_aggregate = total;
    }

private:
    TempStorage& s_;
};

// ---- DoubleBuffer --------------------------------------------------------------------------------
template <typename T>
struct DoubleBuffer
{
    T* d_buffers[2];
    int selector;
    DoubleBuffer()
        : d_buffers{nullptr, nullptr}
        , selector(0)
    {
    }
    DoubleBuffer(T* d_current, T* d_alternate)
        : d_buffers{d_current, d_alternate}
        , selector(0)
    {
    }
    T* Current()
    {
        return d_buffers[selector];
    }
    T* Alternate()
    {
        return d_buffers[selector ^ 1];
    }
};

namespace hipcpu_detail
{

constexpr size_t kTempAlign = 256;

inline cudaError_t reserve(void* temp, size_t& bytes, size_t need, bool* sizeOnly)
{
    *sizeOnly = temp == nullptr;
    if (*sizeOnly)
    {
        bytes = need;
        return cudaSuccess;
    }
    return bytes < need ? cudaErrorInvalidValue : cudaSuccess;
}

inline void scribble(void* temp, size_t bytes)
{
    memset(temp, 0xa5, bytes);
}

template <typename In, typename Out>
__global__ void exclusiveSumKernel(void* temp, size_t tempBytes, In in, Out out, int n)
{
    scribble(temp, tempBytes);
    using V = typename std::remove_cv<typename std::remove_reference<decltype(in[0])>::type>::type;
    V sum{};
    for (int i = 0; i < n; ++i)
    {
        V const v = in[i]; // in == out is allowed: read before writing
        out[i] = sum;
        sum = sum + v;
    }
}

//! the unsigned radix-ordered form of a key (CUB's "twiddle")
inline uint64_t radixBits(uint32_t k)
{
    return k;
}
inline uint64_t radixBits(int32_t k)
{
    return static_cast<uint32_t>(k) ^ 0x80000000u;
}
inline uint64_t radixBits(uint64_t k)
{
    return k;
}
inline uint64_t radixBits(float k)
{
    uint32_t u;
    memcpy(&u, &k, sizeof u);
    if (u == 0x80000000u)
        u = 0; // -0.0 as +0.0
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename K, typename V, typename Off>
__global__ void segmentedSortKernel(void* temp, size_t tempBytes, K* keysIn, V* valsIn, K* keysOut, V* valsOut,
    int numSegments, Off begin, Off end, int beginBit, int endBit, bool descending)
{
    scribble(temp, tempBytes);
    int const width = endBit - beginBit;
    uint64_t const mask = width >= 64 ? ~0ull : ((1ull << width) - 1ull);
    std::vector<uint64_t> digit;
    std::vector<int> order;
    std::vector<K> k2;
    std::vector<V> v2;
    for (int s = 0; s < numSegments; ++s)
    {
        int const b = static_cast<int>(begin[s]);
        int const e = static_cast<int>(end[s]);
        if (e <= b)
            continue;
        int const n = e - b;
        digit.resize(n);
        order.resize(n);
        for (int i = 0; i < n; ++i)
        {
            uint64_t const r = (radixBits(keysIn[b + i]) >> beginBit) & mask;
            digit[i] = descending ? (~r & mask) : r;
        }
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return digit[x] < digit[y]; });
        k2.resize(n);
        v2.resize(n);
        for (int i = 0; i < n; ++i)
        {
            k2[i] = keysIn[b + order[i]];
            v2[i] = valsIn[b + order[i]];
        }
        if (keysIn != keysOut) // "the contents of both buffers may be altered"
        {
            memset(static_cast<void*>(keysIn + b), 0xff, sizeof(K) * n);
            memset(static_cast<void*>(valsIn + b), 0xff, sizeof(V) * n);
        }
        std::copy(k2.begin(), k2.end(), keysOut + b);
        std::copy(v2.begin(), v2.end(), valsOut + b);
    }
}

template <typename K, typename V, typename Off>
cudaError_t segmentedSort(void* temp, size_t& bytes, DoubleBuffer<K>& keys, DoubleBuffer<V>& values, int numItems,
    int numSegments, Off begin, Off end, int beginBit, int endBit, cudaStream_t stream, bool descending)
{
    if (numItems < 0 || numSegments < 0 || beginBit < 0 || endBit > static_cast<int>(sizeof(K) * 8)
        || beginBit > endBit)
        return cudaErrorInvalidValue;
    bool sizeOnly;
    size_t const need = kTempAlign + (static_cast<size_t>(numItems) * (sizeof(K) + sizeof(V)) + kTempAlign - 1)
        / kTempAlign * kTempAlign;
    cudaError_t const e = reserve(temp, bytes, need, &sizeOnly);
    if (sizeOnly || e != cudaSuccess)
        return e;
    if (numItems == 0 || numSegments == 0 || beginBit == endBit)
        return cudaSuccess;
    int const passes = (endBit - beginBit + CUB_HIPCPU_RADIX_BITS - 1) / CUB_HIPCPU_RADIX_BITS;
    K* kIn = keys.Current();
    V* vIn = values.Current();
    if (passes % 2 == 1)
    {
        keys.selector ^= 1;
        values.selector ^= 1;
    }
    hipLaunchKernelGGL((segmentedSortKernel<K, V, Off>), dim3(1), dim3(1), 0, stream, temp, need, kIn, vIn,
        keys.Current(), values.Current(), numSegments, begin, end, beginBit, endBit, descending);
    return cudaGetLastError();
}

} // namespace hipcpu_detail

// ---- device-wide ---------------------------------------------------------------------------------
struct DeviceScan
{
    template <typename In, typename Out>
    static cudaError_t ExclusiveSum(
        void* d_temp_storage, size_t& temp_storage_bytes, In d_in, Out d_out, int num_items, cudaStream_t stream = 0)
    {
        if (num_items < 0)
            return cudaErrorInvalidValue;
        bool sizeOnly;
        size_t const need = hipcpu_detail::kTempAlign;
        cudaError_t const e = hipcpu_detail::reserve(d_temp_storage, temp_storage_bytes, need, &sizeOnly);
        if (sizeOnly || e != cudaSuccess)
            return e;
        if (num_items == 0)
            return cudaSuccess;
        hipLaunchKernelGGL((hipcpu_detail::exclusiveSumKernel<In, Out>), dim3(1), dim3(1), 0, stream,
            d_temp_storage, need, d_in, d_out, num_items);
        return cudaGetLastError();
    }
};

struct DeviceSegmentedRadixSort
{
    template <typename K, typename V, typename Off>
    static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, DoubleBuffer<K>& d_keys,
        DoubleBuffer<V>& d_values, int num_items, int num_segments, Off d_begin_offsets, Off d_end_offsets,
        int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t stream = 0)
    {
        return hipcpu_detail::segmentedSort(d_temp_storage, temp_storage_bytes, d_keys, d_values, num_items,
            num_segments, d_begin_offsets, d_end_offsets, begin_bit, end_bit, stream, false);
    }
    template <typename K, typename V, typename Off>
    static cudaError_t SortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes, DoubleBuffer<K>& d_keys,
        DoubleBuffer<V>& d_values, int num_items, int num_segments, Off d_begin_offsets, Off d_end_offsets,
        int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t stream = 0)
    {
        return hipcpu_detail::segmentedSort(d_temp_storage, temp_storage_bytes, d_keys, d_values, num_items,
            num_segments, d_begin_offsets, d_end_offsets, begin_bit, end_bit, stream, true);
    }
};

} // namespace cub
