/*
 * DIoU-NMS TensorRT plugin: the glues (see diouNMSPlugin.h). Everything the two glues share (fields,
 * shapes, types, formats, workspace, the launch) is one function below; each glue method only
 * forwards to it, and enqueue only unpacks pointers and calls diouNMSLaunch.
 */
#include "diouNMSPlugin.h"

#include "diouNMSKernels.h"

#include <cmath>
#include <cstring>
#include <new>

namespace diou_nms
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::IExprBuilder;
using nvinfer1::ILogger;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

// ---- fields --------------------------------------------------------------------------------------
struct FieldSpec
{
    char const* name;
    PluginFieldType type;
};

// in the order of NmsParams.plugin_attributes()
constexpr FieldSpec kFields[] = {
    {"score_threshold", PluginFieldType::kFLOAT32},
    {"iou_threshold", PluginFieldType::kFLOAT32},
    {"nms_kind", PluginFieldType::kINT32},
    {"beta_nms", PluginFieldType::kFLOAT32},
    {"max_output_boxes", PluginFieldType::kINT32},
    {"top_k", PluginFieldType::kINT32},
    {"class_agnostic", PluginFieldType::kINT32},
    {"input_width", PluginFieldType::kINT32},
    {"input_height", PluginFieldType::kINT32},
};
constexpr int32_t kNbFields = static_cast<int32_t>(sizeof(kFields) / sizeof(kFields[0]));

PluginFieldCollection const* fieldNames() noexcept
{
    static PluginField fields[kNbFields];
    static PluginFieldCollection const collection = [] {
        for (int32_t i = 0; i < kNbFields; ++i)
            fields[i] = PluginField(kFields[i].name, nullptr, kFields[i].type, 1);
        return PluginFieldCollection{kNbFields, fields};
    }();
    return &collection;
}

//! NmsParams' defaults; the frame (input_width/height) defaults to raw pixels
DiouNMSParameters defaultParameters() noexcept
{
    DiouNMSParameters p;
    std::memset(&p, 0, sizeof p);
    p.scoreThreshold = 0.25f;
    p.iouThreshold = 0.45f;
    p.betaNms = 0.6f;
    p.nmsKind = DIOU_NMS_KIND_GREEDY;
    p.maxOutputBoxes = 300;
    p.topK = 30000;
    p.dataType = DIOU_NMS_TYPE_FLOAT;
    p.frameMode = DIOU_NMS_FRAME_INPUT;
    return p;
}

void logError(std::string const& message) noexcept
{
    compat::log(ILogger::Severity::kERROR, (std::string(kPluginName) + ": " + message).c_str());
}

bool readInt(PluginField const& f, int32_t lo, int32_t hi, int32_t* out) noexcept
{
    double v = 0;
    if (!compat::fieldValue(f, &v) || v != std::floor(v) || v < lo || v > hi)
    {
        logError(std::string("field ") + f.name + " must be an integer in [" + std::to_string(lo) + ", "
            + std::to_string(hi) + "]");
        return false;
    }
    *out = static_cast<int32_t>(v);
    return true;
}

bool readFloat(PluginField const& f, double lo, double hi, float* out) noexcept
{
    double v = 0;
    if (!compat::fieldValue(f, &v) || !(v >= lo && v <= hi))
    {
        logError(std::string("field ") + f.name + " must be a number in [" + std::to_string(lo) + ", "
            + std::to_string(hi) + "]");
        return false;
    }
    *out = static_cast<float>(v);
    return true;
}

//! Parameters from plugin fields (ONNX node attributes); fields not given keep NmsParams' defaults,
//! unknown fields are ignored. False (and a logged error) on a value out of its range.
bool parseFields(PluginFieldCollection const* fc, DiouNMSParameters* p) noexcept
{
    *p = defaultParameters();
    if (!fc)
        return true;
    int32_t const big = 0x7fffffff;
    bool ok = true;
    for (int32_t i = 0; i < fc->nbFields && fc->fields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (!f.name)
            continue;
        std::string const name(f.name);
        if (name == "score_threshold")
            ok = readFloat(f, 0.0, 1.0, &p->scoreThreshold) && ok;
        else if (name == "iou_threshold")
            ok = readFloat(f, 0.0, 1.0, &p->iouThreshold) && ok;
        else if (name == "beta_nms")
            ok = readFloat(f, 1e-30, 3.0e38, &p->betaNms) && ok;
        else if (name == "nms_kind")
            ok = readInt(f, DIOU_NMS_KIND_DEFAULT, DIOU_NMS_KIND_DIOU, &p->nmsKind) && ok;
        else if (name == "max_output_boxes")
            ok = readInt(f, 1, big, &p->maxOutputBoxes) && ok;
        else if (name == "top_k")
            ok = readInt(f, 1, big, &p->topK) && ok;
        else if (name == "class_agnostic")
            ok = readInt(f, 0, 1, &p->classAgnostic) && ok;
        else if (name == "input_width")
            ok = readInt(f, 0, big, &p->inputWidth) && ok;
        else if (name == "input_height")
            ok = readInt(f, 0, big, &p->inputHeight) && ok;
    }
    return ok;
}

// ---- shapes, types, formats ----------------------------------------------------------------------
//! Output dims: [B,1], [B,K,4], [B,K], [B,K] with B from the scores input
bool outputDims(int32_t index, DimsExprs const* inputs, int32_t nbInputs, int32_t K, IExprBuilder& eb, DimsExprs* out)
{
    if (index < 0 || index >= kNbOutputs || nbInputs < 2 || inputs[1].nbDims != 3)
        return false;
    out->nbDims = index == 1 ? 3 : 2;
    out->d[0] = inputs[1].d[0];
    out->d[1] = index == 0 ? eb.constant(1) : eb.constant(K);
    if (index == 1)
        out->d[2] = eb.constant(4);
    return true;
}

DataType outputType(int32_t index, DataType inputType) noexcept
{
    return (index == 1 || index == 2) ? inputType : DataType::kINT32;
}

//! Linear tensors; boxes, scores, detection_boxes/scores all float or all half; the rest int32,
//! norm_wh float32. Decides pos from inOut[0..pos] only.
bool formatSupported(int32_t pos, PluginTensorDesc const* const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs < 2 || nbInputs > 3 || nbOutputs != kNbOutputs || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    PluginTensorDesc const& d = *inOut[pos];
    if (d.format != TensorFormat::kLINEAR)
        return false;
    if (pos == 0)
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    if (pos == 1)
        return d.type == inOut[0]->type;
    if (pos < nbInputs)
        return d.type == DataType::kFLOAT;
    int32_t const o = pos - nbInputs;
    return d.type == ((o == 1 || o == 2) ? inOut[0]->type : DataType::kINT32);
}

//! Shapes the glue accepts (-1 = not yet known): boxes [B,N,4], scores [B,N,C], norm_wh [B,2]
bool checkInputs(nvinfer1::Dims const* const* dims, int32_t nbInputs) noexcept
{
    if (nbInputs < 2 || nbInputs > 3)
    {
        logError("expects 2 inputs (boxes, scores) or 3 (boxes, scores, norm_wh), got " + std::to_string(nbInputs));
        return false;
    }
    nvinfer1::Dims const& b = *dims[0];
    nvinfer1::Dims const& s = *dims[1];
    if (b.nbDims != 3 || (b.d[2] != 4 && b.d[2] != -1) || s.nbDims != 3)
    {
        logError("expects boxes [B,N,4] and scores [B,N,C]");
        return false;
    }
    if (nbInputs == 3 && (dims[2]->nbDims != 2 || (dims[2]->d[1] != 2 && dims[2]->d[1] != -1)))
    {
        logError("expects norm_wh [B,2]");
        return false;
    }
    return true;
}

//! The parameters for concrete input shapes (scores [B,N,C]) and type
DiouNMSParameters withShapes(DiouNMSParameters p, nvinfer1::Dims const& scores, DataType type) noexcept
{
    p.batchSize = scores.d[0];
    p.numBoxes = scores.d[1];
    p.numClasses = scores.d[2];
    p.dataType = type == DataType::kHALF ? DIOU_NMS_TYPE_HALF : DIOU_NMS_TYPE_FLOAT;
    return p;
}

int32_t launch(DiouNMSParameters const& param, PluginTensorDesc const* inputDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    DiouNMSParameters const p = withShapes(param, inputDesc[1].dims, inputDesc[0].type);
    int const status = diouNMSLaunch(&p, inputs[0], inputs[1],
        p.frameMode == DIOU_NMS_FRAME_PER_IMAGE ? static_cast<float const*>(inputs[2]) : nullptr, outputs[0],
        outputs[1], outputs[2], outputs[3], workspace, stream);
    if (status != DIOU_NMS_SUCCESS)
        logError("diouNMSLaunch failed with status " + std::to_string(status));
    return status == DIOU_NMS_SUCCESS ? 0 : 1;
}

// ---- V2 serialization: a header and the parameter struct ------------------------------------------
constexpr uint32_t kMagic = 0x534d4e44u; // "DNMS"
struct Serialized
{
    uint32_t magic;
    uint32_t size;
    DiouNMSParameters param;
};

} // namespace

// ---- IPluginV2DynamicExt ------------------------------------------------------------------------------
#if DIOU_NMS_WITH_V2
DIOU_NMS_V2_BEGIN

using namespace nvinfer1;

DiouNMSPlugin::DiouNMSPlugin(DiouNMSParameters const& param)
    : mParam(param)
{
}

DiouNMSPlugin::DiouNMSPlugin(void const* data, size_t length)
    : mParam(defaultParameters())
{
    Serialized s;
    if (!data || length != sizeof s)
    {
        mValid = false;
        return;
    }
    std::memcpy(&s, data, sizeof s);
    mValid = s.magic == kMagic && s.size == sizeof s;
    if (mValid)
        mParam = s.param;
}

char const* DiouNMSPlugin::getPluginType() const noexcept
{
    return kPluginName;
}

char const* DiouNMSPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

int32_t DiouNMSPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t DiouNMSPlugin::initialize() noexcept
{
    return 0;
}

void DiouNMSPlugin::terminate() noexcept {}

size_t DiouNMSPlugin::getSerializationSize() const noexcept
{
    return sizeof(Serialized);
}

void DiouNMSPlugin::serialize(void* buffer) const noexcept
{
    Serialized s;
    std::memset(&s, 0, sizeof s);
    s.magic = kMagic;
    s.size = sizeof s;
    s.param = mParam;
    std::memcpy(buffer, &s, sizeof s);
}

void DiouNMSPlugin::destroy() noexcept
{
    delete this;
}

void DiouNMSPlugin::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace ? pluginNamespace : "";
}

char const* DiouNMSPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

DataType DiouNMSPlugin::getOutputDataType(int32_t index, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return outputType(index, nbInputs > 0 ? inputTypes[0] : DataType::kFLOAT);
}

IPluginV2DynamicExt* DiouNMSPlugin::clone() const noexcept
{
    auto* p = new (std::nothrow) DiouNMSPlugin(mParam);
    if (p)
        p->setPluginNamespace(mNamespace.c_str());
    return p;
}

DimsExprs DiouNMSPlugin::getOutputDimensions(
    int32_t outputIndex, DimsExprs const* inputs, int32_t nbInputs, IExprBuilder& exprBuilder) noexcept
{
    DimsExprs out{};
    if (!outputDims(outputIndex, inputs, nbInputs, mParam.maxOutputBoxes, exprBuilder, &out))
        logError("cannot compute the output dimensions (expects scores [B,N,C])");
    return out;
}

bool DiouNMSPlugin::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    PluginTensorDesc const* descs[3 + kNbOutputs];
    int32_t const n = nbInputs + nbOutputs;
    if (n > 3 + kNbOutputs || pos >= n)
        return false;
    for (int32_t i = 0; i <= pos; ++i)
        descs[i] = &inOut[i];
    return formatSupported(pos, descs, nbInputs, nbOutputs);
}

void DiouNMSPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    Dims const* dims[3] = {};
    for (int32_t i = 0; i < nbInputs && i < 3; ++i)
        dims[i] = &in[i].desc.dims;
    if (checkInputs(dims, nbInputs))
        mParam.frameMode = nbInputs == 3 ? DIOU_NMS_FRAME_PER_IMAGE : DIOU_NMS_FRAME_INPUT;
}

size_t DiouNMSPlugin::getWorkspaceSize(PluginTensorDesc const* inputs, int32_t nbInputs,
    PluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs < 2)
        return 0;
    DiouNMSParameters const p = withShapes(mParam, inputs[1].dims, inputs[0].type);
    return diouNMSWorkspaceSize(&p);
}

int32_t DiouNMSPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return launch(mParam, inputDesc, inputs, outputs, workspace, stream);
}

DiouNMSPluginCreator::DiouNMSPluginCreator() = default;

char const* DiouNMSPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* DiouNMSPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

PluginFieldCollection const* DiouNMSPluginCreator::getFieldNames() noexcept
{
    return fieldNames();
}

IPluginV2* DiouNMSPluginCreator::createPlugin(char const* /*name*/, PluginFieldCollection const* fc) noexcept
{
    DiouNMSParameters p;
    if (!parseFields(fc, &p))
        return nullptr;
    auto* plugin = new (std::nothrow) DiouNMSPlugin(p);
    if (plugin)
        plugin->setPluginNamespace(mNamespace.c_str());
    return plugin;
}

IPluginV2* DiouNMSPluginCreator::deserializePlugin(char const* /*name*/, void const* serialData, size_t serialLength) noexcept
{
    auto* plugin = new (std::nothrow) DiouNMSPlugin(serialData, serialLength);
    if (plugin && !plugin->valid())
    {
        logError("cannot deserialize: not data of this plugin version");
        delete plugin;
        return nullptr;
    }
    if (plugin)
        plugin->setPluginNamespace(mNamespace.c_str());
    return plugin;
}

void DiouNMSPluginCreator::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace ? pluginNamespace : "";
}

char const* DiouNMSPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

DIOU_NMS_V2_END
#endif // DIOU_NMS_WITH_V2

// ---- IPluginV3 ------------------------------------------------------------------------------------
#if DIOU_NMS_WITH_V3

DiouNMSPluginV3::DiouNMSPluginV3(DiouNMSParameters const& param)
    : mParam(param)
{
}

DiouNMSPluginV3::DiouNMSPluginV3(DiouNMSPluginV3 const& other)
    : nvinfer1::IPluginV3(other)
    , nvinfer1::IPluginV3OneCore(other)
    , nvinfer1::IPluginV3OneBuild(other)
    , nvinfer1::IPluginV3OneRuntime(other)
    , mParam(other.mParam)
{
}

nvinfer1::IPluginCapability* DiouNMSPluginV3::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* DiouNMSPluginV3::clone() noexcept
{
    return new (std::nothrow) DiouNMSPluginV3(*this);
}

char const* DiouNMSPluginV3::getPluginName() const noexcept
{
    return kPluginName;
}

char const* DiouNMSPluginV3::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* DiouNMSPluginV3::getPluginNamespace() const noexcept
{
    return "";
}

int32_t DiouNMSPluginV3::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    nvinfer1::Dims const* dims[3] = {};
    for (int32_t i = 0; i < nbInputs && i < 3; ++i)
        dims[i] = &in[i].desc.dims;
    if (!checkInputs(dims, nbInputs))
        return 1;
    mParam.frameMode = nbInputs == 3 ? DIOU_NMS_FRAME_PER_IMAGE : DIOU_NMS_FRAME_INPUT;
    return 0;
}

int32_t DiouNMSPluginV3::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != kNbOutputs || nbInputs < 2)
        return 1;
    for (int32_t i = 0; i < kNbOutputs; ++i)
        outputTypes[i] = outputType(i, inputTypes[0]);
    return 0;
}

int32_t DiouNMSPluginV3::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (nbOutputs != kNbOutputs)
        return 1;
    for (int32_t i = 0; i < kNbOutputs; ++i)
    {
        if (!outputDims(i, inputs, nbInputs, mParam.maxOutputBoxes, exprBuilder, &outputs[i]))
        {
            logError("cannot compute the output shapes (expects scores [B,N,C])");
            return 1;
        }
    }
    return 0;
}

bool DiouNMSPluginV3::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    nvinfer1::PluginTensorDesc const* descs[3 + kNbOutputs];
    int32_t const n = nbInputs + nbOutputs;
    if (n > 3 + kNbOutputs || pos >= n)
        return false;
    for (int32_t i = 0; i <= pos; ++i)
        descs[i] = &inOut[i].desc;
    return formatSupported(pos, descs, nbInputs, nbOutputs);
}

int32_t DiouNMSPluginV3::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

size_t DiouNMSPluginV3::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs < 2)
        return 0;
    // the profile's largest shapes: enough for every smaller batch and box count
    DiouNMSParameters const p = withShapes(mParam, inputs[1].max, inputs[0].desc.type);
    return diouNMSWorkspaceSize(&p);
}

int32_t DiouNMSPluginV3::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    nvinfer1::Dims const* dims[3] = {};
    for (int32_t i = 0; i < nbInputs && i < 3; ++i)
        dims[i] = &in[i].dims;
    if (!checkInputs(dims, nbInputs))
        return 1;
    mParam.frameMode = nbInputs == 3 ? DIOU_NMS_FRAME_PER_IMAGE : DIOU_NMS_FRAME_INPUT;
    return 0;
}

int32_t DiouNMSPluginV3::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return launch(mParam, inputDesc, inputs, outputs, workspace, stream);
}

nvinfer1::IPluginV3* DiouNMSPluginV3::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

nvinfer1::PluginFieldCollection const* DiouNMSPluginV3::getFieldsToSerialize() noexcept
{
    using nvinfer1::PluginField;
    using nvinfer1::PluginFieldType;
    mSerialFields = {
        PluginField("score_threshold", &mParam.scoreThreshold, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_threshold", &mParam.iouThreshold, PluginFieldType::kFLOAT32, 1),
        PluginField("nms_kind", &mParam.nmsKind, PluginFieldType::kINT32, 1),
        PluginField("beta_nms", &mParam.betaNms, PluginFieldType::kFLOAT32, 1),
        PluginField("max_output_boxes", &mParam.maxOutputBoxes, PluginFieldType::kINT32, 1),
        PluginField("top_k", &mParam.topK, PluginFieldType::kINT32, 1),
        PluginField("class_agnostic", &mParam.classAgnostic, PluginFieldType::kINT32, 1),
        PluginField("input_width", &mParam.inputWidth, PluginFieldType::kINT32, 1),
        PluginField("input_height", &mParam.inputHeight, PluginFieldType::kINT32, 1),
    };
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

nvinfer1::IPluginV3* DiouNMSPluginCreatorV3::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    // build phase: the node's attributes; runtime phase: getFieldsToSerialize()'s fields
    DiouNMSParameters p;
    if (!parseFields(fc, &p))
        return nullptr;
    return new (std::nothrow) DiouNMSPluginV3(p);
}

nvinfer1::PluginFieldCollection const* DiouNMSPluginCreatorV3::getFieldNames() noexcept
{
    return fieldNames();
}

char const* DiouNMSPluginCreatorV3::getPluginName() const noexcept
{
    return kPluginName;
}

char const* DiouNMSPluginCreatorV3::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* DiouNMSPluginCreatorV3::getPluginNamespace() const noexcept
{
    return "";
}

#endif // DIOU_NMS_WITH_V3

// ---- registration (diouNMSCompat.h): one creator under DIoUNMS_TRT / "1" / "" ----------------------
#if DIOU_NMS_REGISTER == 2
DIOU_NMS_V2_BEGIN
REGISTER_TENSORRT_PLUGIN(DiouNMSPluginCreator);
DIOU_NMS_V2_END
#elif DIOU_NMS_REGISTER == 3
REGISTER_TENSORRT_PLUGIN(DiouNMSPluginCreatorV3);
#endif

} // namespace diou_nms

#define DIOU_NMS_STR2(x) #x
#define DIOU_NMS_STR(x) DIOU_NMS_STR2(x)

#if DIOU_NMS_REGISTER == 3
#define DIOU_NMS_REGISTERED "IPluginV3 registered"
#elif DIOU_NMS_REGISTER == 2
#define DIOU_NMS_REGISTERED "IPluginV2DynamicExt registered"
#else
#define DIOU_NMS_REGISTERED "not registered (DIOU_NMS_REGISTER=0: the application registers a creator)"
#endif
#if DIOU_NMS_WITH_V2 && DIOU_NMS_WITH_V3
#define DIOU_NMS_COMPILED "IPluginV2DynamicExt and IPluginV3 compiled"
#elif DIOU_NMS_WITH_V3
#define DIOU_NMS_COMPILED "IPluginV3 compiled"
#else
#define DIOU_NMS_COMPILED "IPluginV2DynamicExt compiled"
#endif

extern "C" char const* diouNmsPluginInfo(void)
{
    return "DIoUNMS_TRT version 1: " DIOU_NMS_REGISTERED " (" DIOU_NMS_COMPILED "); TensorRT " DIOU_NMS_STR(
        NV_TENSORRT_MAJOR) "." DIOU_NMS_STR(NV_TENSORRT_MINOR) "." DIOU_NMS_STR(NV_TENSORRT_PATCH) " headers";
}
