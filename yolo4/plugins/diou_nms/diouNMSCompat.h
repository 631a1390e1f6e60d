/*
 * DIoU-NMS plugin: the one place that knows how TensorRT releases differ (8.5 through 11.x).
 *
 * - Headers: 8.5 declares the plugin classes in NvInferRuntimeCommon.h and has no
 *   NvInferRuntimePlugin.h; 8.6+ has it; 10.6+ moves IPluginV3 & co to NvInferPluginBase.h.
 *   NvInferRuntime.h includes whichever exists, so it is the only header included here.
 * - Interfaces: IPluginV2DynamicExt + IPluginCreator exist in every release and are deprecated
 *   (TRT_DEPRECATED = [[deprecated]]) from 10.0; IPluginV3 (OneCore/Build/Runtime) +
 *   IPluginCreatorV3One exist from 10.0. DIOU_NMS_WITH_V2 / DIOU_NMS_WITH_V3 say which glues are
 *   compiled (default: V2 always, V3 from 10.0).
 * - Registration: REGISTER_TENSORRT_PLUGIN (a static PluginRegistrar calling
 *   getPluginRegistry()->registerCreator(creator, "")) compiles and loads in every release:
 *   registerCreator takes an IPluginCreator& in 8.x, both kinds in 10.x, and only
 *   IPluginCreatorInterface& (of which both creators are kinds) in 11.x. The library registers its
 *   creator when it is loaded (dlopen / ctypes.CDLL with RTLD_GLOBAL, trtexec --staticPlugins or
 *   8.5's --plugins). It exports no getCreators/getPluginCreators entry: IPluginRegistry::loadLibrary
 *   (trtexec --dynamicPlugins) would register the same creator a second time.
 * - One creator per (name, version, namespace): the registry refuses a second one, so only one glue
 *   is registered as DIoUNMS_TRT version "1": DIOU_NMS_REGISTER = 3 (IPluginV3) where it exists (10.0 and
 *   later: TensorRT's ONNX parser imports V3 plugins from 10.0 on -- onnx-tensorrt 10.0-GA's
 *   FallbackPluginImporter takes an IPluginCreatorV3One when the creator's kind is not
 *   "PLUGIN CREATOR_V1"), else 2 (IPluginV2DynamicExt: 8.5, 8.6). An engine records which interface
 *   built it: build and run engines with the same library.
 */
#ifndef DIOU_NMS_COMPAT_H
#define DIOU_NMS_COMPAT_H

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "the DIoU-NMS plugin needs TensorRT 8.5 or later"
#endif

#define DIOU_NMS_TRT_AT_LEAST(major, minor)                                                                            \
    (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

#ifndef DIOU_NMS_WITH_V2
#define DIOU_NMS_WITH_V2 1
#endif
#ifndef DIOU_NMS_WITH_V3
#define DIOU_NMS_WITH_V3 DIOU_NMS_TRT_AT_LEAST(10, 0)
#endif
#if DIOU_NMS_WITH_V3 && !DIOU_NMS_TRT_AT_LEAST(10, 0)
#error "IPluginV3 needs TensorRT 10.0 or later (build with DIOU_NMS_WITH_V3=0)"
#endif
#if !DIOU_NMS_WITH_V2 && !DIOU_NMS_WITH_V3
#error "nothing to build: DIOU_NMS_WITH_V2 and DIOU_NMS_WITH_V3 are both 0"
#endif

#ifndef DIOU_NMS_REGISTER
#if DIOU_NMS_WITH_V3
#define DIOU_NMS_REGISTER 3
#else
#define DIOU_NMS_REGISTER 2
#endif
#endif
#if (DIOU_NMS_REGISTER == 2 && !DIOU_NMS_WITH_V2) || (DIOU_NMS_REGISTER == 3 && !DIOU_NMS_WITH_V3)
#error "DIOU_NMS_REGISTER names a glue that is not compiled"
#endif

// The V2 glue is deprecated API (IPluginV2, the return type of IPluginCreator::createPlugin, is
// TRT_DEPRECATED already in 8.5; IPluginV2DynamicExt and IPluginCreator are from 10.0) that still
// loads through 11.x: its declarations and definitions, and only those, compile with the deprecation
// warning off. The V3 glue compiles with every warning on.
#if defined(__GNUC__)
#define DIOU_NMS_V2_BEGIN _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
#define DIOU_NMS_V2_END _Pragma("GCC diagnostic pop")
#elif defined(_MSC_VER)
#define DIOU_NMS_V2_BEGIN __pragma(warning(push)) __pragma(warning(disable : 4996))
#define DIOU_NMS_V2_END __pragma(warning(pop))
#else
#define DIOU_NMS_V2_BEGIN
#define DIOU_NMS_V2_END
#endif

namespace diou_nms
{
namespace compat
{

//! Log through TensorRT's logger (getLogger() exists from 8.0 on)
inline void log(nvinfer1::ILogger::Severity severity, char const* message) noexcept
{
    nvinfer1::ILogger* logger = getLogger();
    if (logger)
        logger->log(severity, message);
}

//! A numeric plugin field as a double (the ONNX parser passes ints as kINT32, floats as kFLOAT32;
//! the other numeric kinds are accepted too); false when the field holds no number
inline bool fieldValue(nvinfer1::PluginField const& f, double* value) noexcept
{
    using nvinfer1::PluginFieldType;
    if (!f.data || f.length < 1)
        return false;
    switch (f.type)
    {
    case PluginFieldType::kFLOAT32: *value = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: *value = *static_cast<double const*>(f.data); return true;
    case PluginFieldType::kINT8: *value = *static_cast<int8_t const*>(f.data); return true;
    case PluginFieldType::kINT16: *value = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT32: *value = *static_cast<int32_t const*>(f.data); return true;
#if DIOU_NMS_TRT_AT_LEAST(10, 0)
    case PluginFieldType::kINT64: *value = static_cast<double>(*static_cast<int64_t const*>(f.data)); return true;
#endif
    default: return false;
    }
}

} // namespace compat
} // namespace diou_nms

#endif // DIOU_NMS_COMPAT_H
