/*
 * A test-only view of the DIoU-NMS workspace after a launch, appended to the HIP-CPU build of
 * diouNMSKernels.cu (same translation unit: it reads the layout the kernels used). Host memory throughout;
 * call hipcpu_sync() first.
 */
#include <cstdint>

extern "C" __attribute__((visibility("default"))) int diouNMSInspect(
    DiouNMSParameters const* param, void const* workspace, int32_t* sorted, uint32_t* cut)
{
    //! per image: how many candidates entered sort 1 (seg1End - seg1Begin), and the top_k cut's score bits
    Derived d;
    if (derive(param, &d) != DIOU_NMS_SUCCESS)
        return -1;
    size_t cubBytes = 0;
    if (cubTempBytes(d, &cubBytes) != cudaSuccess)
        return -2;
    Layout const L = layout(d, cubBytes);
    void* ws = const_cast<void*>(workspace);
    int32_t const* begin = at<int32_t>(ws, L.seg1Begin);
    int32_t const* end = at<int32_t>(ws, L.seg1End);
    uint32_t const* bits = at<uint32_t>(ws, L.cutBits);
    for (int b = 0; b < d.B; ++b)
    {
        sorted[b] = end[b] - begin[b];
        cut[b] = bits[b];
    }
    return 0;
}

namespace
{
__global__ void ubsanControlKernel(int* x)
{
    x[0] = x[0] + 1; // signed overflow when x[0] == INT_MAX
}
} // namespace

//! The sanitizer run's positive control: x[0] + 1 inside a kernel launch (UBSan must report it when
//! x[0] == INT_MAX); waits for the launch.
extern "C" __attribute__((visibility("default"))) int hipcpuUbsanControl(int* x)
{
    hipLaunchKernelGGL(ubsanControlKernel, dim3(1), dim3(1), 0, nullptr, x);
    return static_cast<int>(hipDeviceSynchronize());
}
