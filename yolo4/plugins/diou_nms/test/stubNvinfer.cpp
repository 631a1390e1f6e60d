/*
 * A stand-in for libnvinfer.so, for tests on machines without TensorRT's libraries: getLogger()
 * (prints to stderr) and getPluginRegistry(), a registry that records what registers itself. Lets
 * the test suite link the real plugin library (yolo4 build-plugin) against the headers of a release
 * and load it: the static REGISTER_TENSORRT_PLUGIN runs and the test reads what it registered
 * (stubRegistered). Compiled against the same headers as the plugin (the registry's vtable is
 * release-specific):
 *
 *   g++ -std=c++17 -shared -fPIC -isystem TRT/include -isystem CUDA/include stubNvinfer.cpp \
 *       -Wl,-soname,libnvinfer.so.MAJOR -o libnvinfer.so
 */
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace
{
using namespace nvinfer1;

class StderrLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        std::fprintf(stderr, "[stub libnvinfer %d] %s\n", static_cast<int>(severity), msg);
    }
};

std::string gRegistered;

void record(char const* name, char const* version, char const* ns, char const* kind)
{
    gRegistered += std::string(name) + "|" + version + "|" + (ns ? ns : "") + "|" + kind + "\n";
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

class RecordingRegistry : public IPluginRegistry
{
public:
#if NV_TENSORRT_MAJOR < 11 // 11.x keeps only the IPluginCreatorInterface methods
    bool registerCreator(IPluginCreator& creator, AsciiChar const* const ns) noexcept override
    {
        record(creator.getPluginName(), creator.getPluginVersion(), ns, "IPluginCreator");
        return true;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
#endif
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
#if NV_TENSORRT_MAJOR < 11
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        return false;
    }
#endif
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 6
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override
    {
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
#endif
#if NV_TENSORRT_MAJOR >= 10
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        InterfaceInfo const info = creator.getInterfaceInfo();
        if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0)
        {
            auto& c = static_cast<IPluginCreatorV3One&>(creator);
            record(c.getPluginName(), c.getPluginVersion(), ns, info.kind);
        }
        else
        {
            auto& c = static_cast<IPluginCreator&>(creator);
            record(c.getPluginName(), c.getPluginVersion(), ns, info.kind);
        }
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreatorInterface* getCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override
    {
        return false;
    }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return 0;
    }
#endif
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 10)
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
#endif
};

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

} // namespace

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    static RecordingRegistry registry;
    return &registry;
}

extern "C" __attribute__((visibility("default"))) nvinfer1::ILogger* getLogger() noexcept
{
    static StderrLogger logger;
    return &logger;
}

//! "name|version|namespace|kind\n" for every creator registered so far
extern "C" __attribute__((visibility("default"))) char const* stubRegistered()
{
    return gRegistered.c_str();
}
