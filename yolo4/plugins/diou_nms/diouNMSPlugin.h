/*
 * DIoU-NMS TensorRT plugin DIoUNMS_TRT, version "1", namespace "": two thin glues over the same
 * kernels (diouNMSKernels.h): IPluginV2DynamicExt + IPluginCreator (TensorRT 8.5 through 11.x) and
 * IPluginV3 (OneCore/Build/Runtime) + IPluginCreatorV3One (10.0 and later). Which one is registered:
 * diouNMSCompat.h.
 *
 * Inputs:  boxes [B,N,4] (x1,y1,x2,y2, input pixels), scores [B,N,C]: both float32 or both float16;
 *          optional norm_wh [B,2] float32: each image's NMS frame (letterbox content w, h).
 * Outputs: num_detections [B,1] int32, detection_boxes [B,K,4], detection_scores [B,K] (input type),
 *          detection_classes [B,K] int32 (EfficientNMS_TRT's layout); K = max_output_boxes.
 * Fields:  score_threshold, iou_threshold, beta_nms (float32); nms_kind, max_output_boxes, top_k,
 *          class_agnostic, input_width, input_height (int32): yolo4 NmsParams.plugin_attributes().
 */
#ifndef DIOU_NMS_PLUGIN_H
#define DIOU_NMS_PLUGIN_H

#include "diouNMSCompat.h"
#include "diouNMSParameters.h"

#include <string>
#include <vector>

namespace diou_nms
{

constexpr char const* kPluginName = "DIoUNMS_TRT";
constexpr char const* kPluginVersion = "1";
constexpr int32_t kNbOutputs = 4;

#if DIOU_NMS_WITH_V2
DIOU_NMS_V2_BEGIN

class DiouNMSPlugin : public nvinfer1::IPluginV2DynamicExt
{
public:
    explicit DiouNMSPlugin(DiouNMSParameters const& param);
    DiouNMSPlugin(void const* data, size_t length);
    DiouNMSPlugin() = delete;
    ~DiouNMSPlugin() override = default;

    // IPluginV2
    char const* getPluginType() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t initialize() noexcept override;
    void terminate() noexcept override;
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;
    void destroy() noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    bool valid() const noexcept
    {
        return mValid;
    }

private:
    DiouNMSParameters mParam;
    std::string mNamespace;
    bool mValid{true};
};

class DiouNMSPluginCreator : public nvinfer1::IPluginCreator
{
public:
    DiouNMSPluginCreator();
    ~DiouNMSPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(char const* name, void const* serialData, size_t serialLength) noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::string mNamespace;
};

DIOU_NMS_V2_END
#endif // DIOU_NMS_WITH_V2

#if DIOU_NMS_WITH_V3

class DiouNMSPluginV3 : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit DiouNMSPluginV3(DiouNMSParameters const& param);
    DiouNMSPluginV3(DiouNMSPluginV3 const& other);
    DiouNMSPluginV3& operator=(DiouNMSPluginV3 const&) = delete;
    ~DiouNMSPluginV3() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    DiouNMSParameters mParam;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class DiouNMSPluginCreatorV3 : public nvinfer1::IPluginCreatorV3One
{
public:
    DiouNMSPluginCreatorV3() = default;
    ~DiouNMSPluginCreatorV3() override = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
};

#endif // DIOU_NMS_WITH_V3

} // namespace diou_nms

extern "C"
{
    //! "DIoUNMS_TRT version 1: IPluginV3 registered (IPluginV2DynamicExt also compiled); TensorRT 10.13.3 headers"
#if defined(_WIN32)
    __declspec(dllexport)
#else
    __attribute__((visibility("default")))
#endif
    char const* diouNmsPluginInfo(void);
}

#endif // DIOU_NMS_PLUGIN_H
