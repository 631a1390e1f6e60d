/*
 * The TensorRT glue run on the CPU, the way TensorRT calls it, against a release's headers: no
 * TensorRT library and no GPU. Built with the CPU build of the kernels (diouNMSHost.cpp, the same C
 * API) and a getLogger() of its own, and without static registration:
 *
 *   g++ -std=c++17 -shared -fPIC -ffp-contract=off -DDIOU_NMS_REGISTER=0 -isystem TRT/include \
 *       -isystem CUDA/include diouNMSPlugin.cpp diouNMSHost.cpp test/glueHostCheck.cpp -o libglue_check.so
 *
 * glueCheck() creates the plugin through its creator from plugin fields typed as TensorRT's ONNX
 * parser types node attributes (float -> kFLOAT32, int -> kINT32), checks names, field names, output
 * count, types and shapes (a constant-folding IExprBuilder), the format combinations, configures it,
 * serializes and deserializes it (V2: serialize/deserializePlugin; V3: getFieldsToSerialize/
 * createPlugin(kRUNTIME), clone, attachToContext, onShapeChange), asks for the workspace and runs
 * enqueue on host buffers. The test suite compares the outputs with the numpy reference.
 *
 * Linked instead against the HIP-CPU build of the real kernels (diouNMSKernels.cu through HIP-CPU,
 * yolo4.plugins.build.build_hipcpu_library, no diouNMSHost.cpp), whose launches are asynchronous as on a
 * GPU: that library's hipcpu_sync() (a weak reference here, null with the CPU build) waits for the
 * enqueued work before the outputs are read, as an application synchronizes its stream.
 */
#include "../diouNMSKernels.h"
#include "../diouNMSPlugin.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

extern "C" int hipcpu_sync(void) __attribute__((weak)); // the HIP-CPU kernel build only
extern "C" void* hipcpu_stream(void) __attribute__((weak)); // its stream (HIP-CPU's null stream is unordered)

namespace
{
using namespace nvinfer1;

//! the stream enqueue gets: HIP-CPU's created stream with those kernels, else none (the CPU build)
cudaStream_t checkStream()
{
    return hipcpu_stream ? static_cast<cudaStream_t>(hipcpu_stream()) : nullptr;
}

std::string gLog;

class BufferLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        gLog += std::to_string(static_cast<int>(severity)) + ": " + msg + "\n";
    }
};

#if NV_TENSORRT_MAJOR >= 10
using DimValue = int64_t;
#else
using DimValue = int32_t;
#endif

// ---- a constant-folding IExprBuilder ------------------------------------------------------------------
class ConstImpl : public apiv::VDimensionExpr
{
public:
    explicit ConstImpl(DimValue v)
        : mValue(v)
    {
    }
    bool isConstant() const override
    {
        return true;
    }
    DimValue getConstantValue() const override
    {
        return mValue;
    }
#if NV_TENSORRT_MAJOR >= 10
    bool isSizeTensor() const override
    {
        return false;
    }
#endif

private:
    DimValue mValue;
};

class ConstExpr : public IDimensionExpr
{
public:
    explicit ConstExpr(apiv::VDimensionExpr* impl)
    {
        mImpl = impl;
    }
    ~ConstExpr() noexcept override = default;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(DimValue value) override
    {
        mImpls.emplace_back(value);
        mExprs.emplace_back(&mImpls.back());
        return &mExprs.back();
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr; // the plugin only uses constants and its inputs' dimensions
    }
#if NV_TENSORRT_MAJOR >= 10
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }
#endif

private:
    std::deque<ConstImpl> mImpls;
    std::deque<ConstExpr> mExprs;
};

class Builder : public IExprBuilder
{
public:
    Builder()
    {
        mImpl = &mBuilder;
    }
    ~Builder() noexcept override = default;

private:
    BuilderImpl mBuilder;
};

// ---- checks ---------------------------------------------------------------------------------------
std::string gError;

bool fail(char const* fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (gError.empty())
        gError = buf;
    return false;
}

#define CHECK(cond, ...)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
            return fail(__VA_ARGS__);                                                                                  \
    } while (0)

struct Fields
{
    float f[3];
    int32_t i[6];
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};

    explicit Fields(DiouNMSParameters const& a)
    {
        f[0] = a.scoreThreshold;
        f[1] = a.iouThreshold;
        f[2] = a.betaNms;
        i[0] = a.nmsKind;
        i[1] = a.maxOutputBoxes;
        i[2] = a.topK;
        i[3] = a.classAgnostic;
        i[4] = a.inputWidth;
        i[5] = a.inputHeight;
        fields = {PluginField("score_threshold", &f[0], PluginFieldType::kFLOAT32, 1),
            PluginField("iou_threshold", &f[1], PluginFieldType::kFLOAT32, 1),
            PluginField("beta_nms", &f[2], PluginFieldType::kFLOAT32, 1),
            PluginField("nms_kind", &i[0], PluginFieldType::kINT32, 1),
            PluginField("max_output_boxes", &i[1], PluginFieldType::kINT32, 1),
            PluginField("top_k", &i[2], PluginFieldType::kINT32, 1),
            PluginField("class_agnostic", &i[3], PluginFieldType::kINT32, 1),
            PluginField("input_width", &i[4], PluginFieldType::kINT32, 1),
            PluginField("input_height", &i[5], PluginFieldType::kINT32, 1),
            PluginField("plugin_version", "1", PluginFieldType::kCHAR, 2)}; // unknown fields are ignored
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
    }
};

Dims dims(std::initializer_list<int> d)
{
    Dims r{};
    r.nbDims = static_cast<int32_t>(d.size());
    int k = 0;
    for (int v : d)
        r.d[k++] = v;
    return r;
}

//! The I/O descriptors of one call: inputs then outputs
struct Io
{
    std::vector<PluginTensorDesc> desc;
    int nbInputs;

    Io(int B, int N, int C, int K, int nbIn, DataType t)
        : nbInputs(nbIn)
    {
        auto add = [this](Dims d, DataType type) {
            PluginTensorDesc x{};
            x.dims = d;
            x.type = type;
            x.format = TensorFormat::kLINEAR;
            x.scale = 1.0f;
            desc.push_back(x);
        };
        add(dims({B, N, 4}), t);
        add(dims({B, N, C}), t);
        if (nbIn == 3)
            add(dims({B, 2}), DataType::kFLOAT);
        add(dims({B, 1}), DataType::kINT32);
        add(dims({B, K, 4}), t);
        add(dims({B, K}), t);
        add(dims({B, K}), DataType::kINT32);
    }
    std::vector<DynamicPluginTensorDesc> dynamic(bool wildcardBatch) const
    {
        std::vector<DynamicPluginTensorDesc> r(desc.size());
        for (size_t k = 0; k < desc.size(); ++k)
        {
            r[k].desc = desc[k];
            if (wildcardBatch)
                r[k].desc.dims.d[0] = -1;
            r[k].min = desc[k].dims;
            r[k].max = desc[k].dims;
#if NV_TENSORRT_MAJOR >= 10
            r[k].opt = desc[k].dims;
#endif
        }
        return r;
    }
};

template <typename Supports>
bool checkFormats(Io const& io, Supports supports)
{
    int const n = static_cast<int>(io.desc.size());
    int const nbOut = n - io.nbInputs;
    for (int pos = 0; pos < n; ++pos)
        CHECK(supports(io.desc, pos, io.nbInputs, nbOut), "supportsFormatCombination(%d) rejects the valid combination", pos);
    DataType const t = io.desc[0].type;
    DataType const other = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
    struct Bad
    {
        int pos;
        DataType type;
        TensorFormat format;
    };
    Bad const bad[] = {{0, DataType::kINT32, TensorFormat::kLINEAR}, {1, other, TensorFormat::kLINEAR},
        {io.nbInputs + 0, DataType::kFLOAT, TensorFormat::kLINEAR}, {io.nbInputs + 1, other, TensorFormat::kLINEAR},
        {io.nbInputs + 2, DataType::kINT32, TensorFormat::kLINEAR}, {io.nbInputs + 3, t, TensorFormat::kLINEAR},
        {0, t, TensorFormat::kCHW32}};
    for (Bad const& b : bad)
    {
        std::vector<PluginTensorDesc> d = io.desc;
        d[b.pos].type = b.type;
        d[b.pos].format = b.format;
        CHECK(!supports(d, b.pos, io.nbInputs, nbOut), "supportsFormatCombination(%d) accepts a wrong type/format", b.pos);
    }
    if (io.nbInputs == 3)
    {
        std::vector<PluginTensorDesc> d = io.desc;
        d[2].type = DataType::kHALF;
        CHECK(!supports(d, 2, io.nbInputs, nbOut), "supportsFormatCombination accepts a half norm_wh");
    }
    return true;
}

bool checkShape(DimsExprs const& e, std::initializer_list<int> want, int index)
{
    CHECK(e.nbDims == static_cast<int>(want.size()), "output %d has %d dims", index, e.nbDims);
    int k = 0;
    for (int w : want)
    {
        CHECK(e.d[k] && e.d[k]->isConstant() && e.d[k]->getConstantValue() == w, "output %d dim %d is not %d", index, k, w);
        ++k;
    }
    return true;
}

bool checkShapes(DimsExprs const* out, int B, int K)
{
    return checkShape(out[0], {B, 1}, 0) && checkShape(out[1], {B, K, 4}, 1) && checkShape(out[2], {B, K}, 2)
        && checkShape(out[3], {B, K}, 3);
}

struct Buffers
{
    void const* in[3];
    void* out[4];
};

bool checkFieldNames(PluginFieldCollection const* fc)
{
    static char const* const names[] = {"score_threshold", "iou_threshold", "nms_kind", "beta_nms", "max_output_boxes",
        "top_k", "class_agnostic", "input_width", "input_height"};
    CHECK(fc && fc->nbFields == 9, "getFieldNames: %d fields", fc ? fc->nbFields : -1);
    for (int k = 0; k < 9; ++k)
        CHECK(std::strcmp(fc->fields[k].name, names[k]) == 0, "getFieldNames: field %d is %s", k, fc->fields[k].name);
    return true;
}

std::unique_ptr<unsigned char[]> workspace(size_t bytes, void** aligned)
{
    std::unique_ptr<unsigned char[]> mem(new unsigned char[bytes + 256]);
    *aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(mem.get()) + 255) & ~uintptr_t(255));
    return mem;
}

#if DIOU_NMS_WITH_V2
DIOU_NMS_V2_BEGIN
bool runV2(DiouNMSParameters const& a, int B, int N, int C, DataType t, int nbInputs, Buffers const& buf)
{
    int const K = a.maxOutputBoxes;
    diou_nms::DiouNMSPluginCreator creator;
    creator.setPluginNamespace("");
    CHECK(std::strcmp(creator.getPluginName(), "DIoUNMS_TRT") == 0 && std::strcmp(creator.getPluginVersion(), "1") == 0,
        "V2 creator name/version");
    if (!checkFieldNames(creator.getFieldNames()))
        return false;
    Fields f(a);
    IPluginV2* raw = creator.createPlugin("nms", &f.fc);
    CHECK(raw, "V2 createPlugin returned null");
    auto* plugin = static_cast<IPluginV2DynamicExt*>(raw);
    std::unique_ptr<IPluginV2DynamicExt, void (*)(IPluginV2DynamicExt*)> keep(plugin, [](IPluginV2DynamicExt* p) { p->destroy(); });
    CHECK(std::strcmp(plugin->getPluginType(), "DIoUNMS_TRT") == 0 && std::strcmp(plugin->getPluginVersion(), "1") == 0,
        "V2 plugin type/version");
    CHECK(plugin->getNbOutputs() == 4, "V2 getNbOutputs");
    DataType const inTypes[3] = {t, t, DataType::kFLOAT};
    DataType const want[4] = {DataType::kINT32, t, t, DataType::kINT32};
    for (int k = 0; k < 4; ++k)
        CHECK(plugin->getOutputDataType(k, inTypes, nbInputs) == want[k], "V2 getOutputDataType(%d)", k);
    Builder eb;
    DimsExprs in[3];
    in[0].nbDims = 3;
    in[0].d[0] = eb.constant(B);
    in[0].d[1] = eb.constant(N);
    in[0].d[2] = eb.constant(4);
    in[1] = in[0];
    in[1].d[2] = eb.constant(C);
    in[2].nbDims = 2;
    in[2].d[0] = in[0].d[0];
    in[2].d[1] = eb.constant(2);
    DimsExprs out[4];
    for (int k = 0; k < 4; ++k)
        out[k] = plugin->getOutputDimensions(k, in, nbInputs, eb);
    if (!checkShapes(out, B, K))
        return false;
    Io io(B, N, C, K, nbInputs, t);
    bool const formats = checkFormats(io, [plugin](std::vector<PluginTensorDesc> const& d, int pos, int nIn, int nOut) {
        return plugin->supportsFormatCombination(pos, d.data(), nIn, nOut);
    });
    if (!formats)
        return false;
    std::vector<DynamicPluginTensorDesc> dyn = io.dynamic(true);
    plugin->configurePlugin(dyn.data(), nbInputs, dyn.data() + nbInputs, 4);
    CHECK(plugin->initialize() == 0, "V2 initialize");

    // engine serialization round trip
    std::vector<char> blob(plugin->getSerializationSize());
    plugin->serialize(blob.data());
    IPluginV2* raw2 = creator.deserializePlugin("nms", blob.data(), blob.size());
    CHECK(raw2, "V2 deserializePlugin returned null");
    auto* plugin2 = static_cast<IPluginV2DynamicExt*>(raw2);
    std::unique_ptr<IPluginV2DynamicExt, void (*)(IPluginV2DynamicExt*)> keep2(plugin2, [](IPluginV2DynamicExt* p) { p->destroy(); });
    CHECK(creator.deserializePlugin("nms", blob.data(), blob.size() - 1) == nullptr, "V2 accepts truncated data");
    IPluginV2DynamicExt* cloned = plugin2->clone();
    CHECK(cloned, "V2 clone");
    std::unique_ptr<IPluginV2DynamicExt, void (*)(IPluginV2DynamicExt*)> keep3(cloned, [](IPluginV2DynamicExt* p) { p->destroy(); });
    size_t const bytes = cloned->getWorkspaceSize(io.desc.data(), nbInputs, io.desc.data() + nbInputs, 4);
    CHECK(bytes > 0, "V2 getWorkspaceSize is 0");
    void* ws = nullptr;
    auto mem = workspace(bytes, &ws);
    int32_t const status = cloned->enqueue(io.desc.data(), io.desc.data() + nbInputs, buf.in, buf.out, ws, checkStream());
    CHECK(status == 0, "V2 enqueue returned %d", status);
    CHECK(!hipcpu_sync || hipcpu_sync() == 0, "V2: the enqueued kernels failed");
    cloned->terminate();
    return true;
}
DIOU_NMS_V2_END
#endif

#if DIOU_NMS_WITH_V3
bool runV3(DiouNMSParameters const& a, int B, int N, int C, DataType t, int nbInputs, Buffers const& buf)
{
    int const K = a.maxOutputBoxes;
    diou_nms::DiouNMSPluginCreatorV3 creator;
    CHECK(std::strcmp(creator.getPluginName(), "DIoUNMS_TRT") == 0 && std::strcmp(creator.getPluginVersion(), "1") == 0
            && std::strcmp(creator.getPluginNamespace(), "") == 0,
        "V3 creator name/version/namespace");
    CHECK(std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "V3 creator interface kind");
    if (!checkFieldNames(creator.getFieldNames()))
        return false;
    Fields f(a);
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("nms", &f.fc, TensorRTPhase::kBUILD));
    CHECK(plugin, "V3 createPlugin(kBUILD) returned null");
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    CHECK(core && build && plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME), "V3 capabilities");
    CHECK(std::strcmp(core->getPluginName(), "DIoUNMS_TRT") == 0 && std::strcmp(core->getPluginVersion(), "1") == 0,
        "V3 core name/version");
    CHECK(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0, "V3 build interface kind");
    CHECK(build->getNbOutputs() == 4, "V3 getNbOutputs");
    DataType const inTypes[3] = {t, t, DataType::kFLOAT};
    DataType const want[4] = {DataType::kINT32, t, t, DataType::kINT32};
    DataType got[4];
    CHECK(build->getOutputDataTypes(got, 4, inTypes, nbInputs) == 0, "V3 getOutputDataTypes failed");
    for (int k = 0; k < 4; ++k)
        CHECK(got[k] == want[k], "V3 getOutputDataTypes(%d)", k);
    Builder eb;
    DimsExprs in[3];
    in[0].nbDims = 3;
    in[0].d[0] = eb.constant(B);
    in[0].d[1] = eb.constant(N);
    in[0].d[2] = eb.constant(4);
    in[1] = in[0];
    in[1].d[2] = eb.constant(C);
    in[2].nbDims = 2;
    in[2].d[0] = in[0].d[0];
    in[2].d[1] = eb.constant(2);
    DimsExprs out[4];
    CHECK(build->getOutputShapes(in, nbInputs, nullptr, 0, out, 4, eb) == 0, "V3 getOutputShapes failed");
    if (!checkShapes(out, B, K))
        return false;
    Io io(B, N, C, K, nbInputs, t);
    bool const formats = checkFormats(io, [build](std::vector<PluginTensorDesc> const& d, int pos, int nIn, int nOut) {
        std::vector<DynamicPluginTensorDesc> dd(d.size());
        for (size_t k = 0; k < d.size(); ++k)
            dd[k].desc = d[k];
        return build->supportsFormatCombination(pos, dd.data(), nIn, nOut);
    });
    if (!formats)
        return false;
    std::vector<DynamicPluginTensorDesc> dyn = io.dynamic(true);
    CHECK(build->configurePlugin(dyn.data(), nbInputs, dyn.data() + nbInputs, 4) == 0, "V3 configurePlugin failed");
    std::vector<DynamicPluginTensorDesc> fixed = io.dynamic(false);
    size_t const bytes = build->getWorkspaceSize(fixed.data(), nbInputs, fixed.data() + nbInputs, 4);
    CHECK(bytes > 0, "V3 getWorkspaceSize is 0");

    // engine serialization round trip: the fields to serialize make the runtime plugin
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    CHECK(serial && serial->nbFields == 9, "V3 getFieldsToSerialize");
    std::unique_ptr<IPluginV3> restored(creator.createPlugin("nms", serial, TensorRTPhase::kRUNTIME));
    CHECK(restored, "V3 createPlugin(kRUNTIME) returned null");
    auto* rt = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::unique_ptr<IPluginV3> attached(rt->attachToContext(nullptr));
    CHECK(attached, "V3 attachToContext returned null");
    std::unique_ptr<IPluginV3> cloned(attached->clone());
    CHECK(cloned, "V3 clone returned null");
    auto* exec = static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(exec->setTactic(0) == 0, "V3 setTactic");
    CHECK(exec->onShapeChange(io.desc.data(), nbInputs, io.desc.data() + nbInputs, 4) == 0, "V3 onShapeChange failed");
    void* ws = nullptr;
    auto mem = workspace(bytes, &ws);
    int32_t const status = exec->enqueue(io.desc.data(), io.desc.data() + nbInputs, buf.in, buf.out, ws, checkStream());
    CHECK(status == 0, "V3 enqueue returned %d", status);
    CHECK(!hipcpu_sync || hipcpu_sync() == 0, "V3: the enqueued kernels failed");
    return true;
}
#endif

} // namespace

extern "C" nvinfer1::ILogger* getLogger() noexcept
{
    static BufferLogger logger;
    return &logger;
}

//! Create, check and run glue 2 (IPluginV2DynamicExt) or 3 (IPluginV3) with attributes a (the tensor
//! fields give B, N, C, the type and the frame mode) on host buffers. Returns 0, or 1 with a message.
extern "C" __attribute__((visibility("default"))) int glueCheck(int glue, DiouNMSParameters const* a, void const* boxes,
    void const* scores, float const* normWH, void* numDetections, void* detectionBoxes, void* detectionScores,
    void* detectionClasses, char* message, int messageLength)
{
    gError.clear();
    gLog.clear();
    int const nbInputs = a->frameMode == DIOU_NMS_FRAME_PER_IMAGE ? 3 : 2;
    DataType const t = a->dataType == DIOU_NMS_TYPE_HALF ? DataType::kHALF : DataType::kFLOAT;
    Buffers buf{{boxes, scores, normWH}, {numDetections, detectionBoxes, detectionScores, detectionClasses}};
    bool ok = false;
    if (glue == 2)
    {
#if DIOU_NMS_WITH_V2
        ok = runV2(*a, a->batchSize, a->numBoxes, a->numClasses, t, nbInputs, buf);
#else
        ok = fail("the V2 glue is not compiled");
#endif
    }
    else if (glue == 3)
    {
#if DIOU_NMS_WITH_V3
        ok = runV3(*a, a->batchSize, a->numBoxes, a->numClasses, t, nbInputs, buf);
#else
        ok = fail("the V3 glue is not compiled (TensorRT < 10)");
#endif
    }
    else
    {
        ok = fail("glue must be 2 or 3");
    }
    std::string const text = ok ? gLog : gError + (gLog.empty() ? "" : " | log: " + gLog);
    if (message && messageLength > 0)
    {
        std::strncpy(message, text.c_str(), static_cast<size_t>(messageLength) - 1);
        message[messageLength - 1] = '\0';
    }
    return ok ? 0 : 1;
}

//! Plugin fields the creators reject: returns how many of the bad values were refused (all = 5)
extern "C" __attribute__((visibility("default"))) int glueRejects(int glue)
{
    DiouNMSParameters a{};
    int refused = 0;
    for (int k = 0; k < 5; ++k)
    {
        a.scoreThreshold = k == 0 ? 1.5f : 0.25f;
        a.iouThreshold = k == 1 ? -0.1f : 0.45f;
        a.nmsKind = k == 2 ? 3 : 1;
        a.betaNms = 0.6f;
        a.maxOutputBoxes = k == 3 ? 0 : 100;
        a.topK = 1000;
        a.classAgnostic = k == 4 ? 2 : 0;
        Fields f(a);
#if DIOU_NMS_WITH_V2
        if (glue == 2)
        {
            DIOU_NMS_V2_BEGIN
            diou_nms::DiouNMSPluginCreator creator;
            IPluginV2* p = creator.createPlugin("nms", &f.fc);
            DIOU_NMS_V2_END
            refused += p == nullptr;
            if (p)
                p->destroy();
        }
#endif
#if DIOU_NMS_WITH_V3
        if (glue == 3)
        {
            diou_nms::DiouNMSPluginCreatorV3 creator;
            IPluginV3* p = creator.createPlugin("nms", &f.fc, TensorRTPhase::kBUILD);
            refused += p == nullptr;
            delete p;
        }
#endif
    }
    return refused;
}
