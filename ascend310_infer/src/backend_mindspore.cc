// Ascend 310 backend: the MindSpore C++ inference API running a MINDIR export.
//
// Built only when CMake finds MindSpore's include/api/model.h and
// libmindspore.so (the Ascend build of MindSpore; the CPU/GPU wheels do not
// ship the C++ inference API). Same flow as the upstream model-zoo apps:
// Context + AscendDeviceInfo(device id) -> Serialization::Load(MINDIR) ->
// Model::Build(GraphCell) -> Predict per image.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/serialization.h"
#include "include/api/types.h"

#include "backend.h"
#include "utils.h"

namespace zoo {
namespace {

std::string ShapeText(const std::vector<int64_t> &shape) {
  std::string text;
  for (int64_t dim : shape) text += (text.empty() ? "" : "x") + std::to_string(dim);
  return text;
}

class MindSporeBackend : public Backend {
 public:
  MindSporeBackend(const std::string &model_path, int device_id) {
    auto context = std::make_shared<mindspore::Context>();
    auto ascend = std::make_shared<mindspore::AscendDeviceInfo>();
    ascend->SetDeviceID(static_cast<uint32_t>(device_id));
    context->MutableDeviceInfo().push_back(ascend);

    mindspore::Graph graph;
    mindspore::Status status = mindspore::Serialization::Load(model_path, mindspore::ModelType::kMindIR, &graph);
    if (status != mindspore::kSuccess) {
      throw std::runtime_error("MindSpore cannot load MINDIR '" + model_path + "': " + status.ToString());
    }
    status = model_.Build(mindspore::GraphCell(graph), context);
    if (status != mindspore::kSuccess) {
      throw std::runtime_error("MindSpore cannot build '" + model_path + "' on Ascend device " +
                               std::to_string(device_id) + ": " + status.ToString());
    }
    inputs_ = model_.GetInputs();
    if (inputs_.size() != 1) {
      throw std::runtime_error("the model has " + std::to_string(inputs_.size()) + " inputs; the app feeds one image");
    }
  }

  void Run(const float *input, size_t count, int /*height*/, int /*width*/,
           std::vector<std::vector<float>> *outputs) override {
    const mindspore::MSTensor &model_input = inputs_[0];
    if (model_input.DataType() != mindspore::DataType::kNumberTypeFloat32 ||
        model_input.DataSize() != count * sizeof(float)) {
      throw std::runtime_error("the model input is " + ShapeText(model_input.Shape()) +
                               " (not float32 of the image size?); the image tensor has " + std::to_string(count) +
                               " float32 values: export with batch 1 and this image_size");
    }
    std::vector<mindspore::MSTensor> feed{mindspore::MSTensor(model_input.Name(), model_input.DataType(),
                                                              model_input.Shape(), input, count * sizeof(float))};
    std::vector<mindspore::MSTensor> results;
    mindspore::Status status = model_.Predict(feed, &results);
    if (status != mindspore::kSuccess) throw std::runtime_error("MindSpore Predict failed: " + status.ToString());
    outputs->clear();
    for (const mindspore::MSTensor &result : results) {
      std::shared_ptr<const void> data = result.Data();
      const size_t elements = static_cast<size_t>(result.ElementNum());
      std::vector<float> values(elements);
      if (result.DataType() == mindspore::DataType::kNumberTypeFloat32) {
        const float *source = static_cast<const float *>(data.get());
        values.assign(source, source + elements);
      } else if (result.DataType() == mindspore::DataType::kNumberTypeFloat16) {
        // Result files are float32 whatever precision the graph ran in.
        const uint16_t *source = static_cast<const uint16_t *>(data.get());
        for (size_t i = 0; i < elements; ++i) values[i] = HalfToFloat(source[i]);
      } else {
        throw std::runtime_error("output '" + result.Name() + "' is neither float32 nor float16");
      }
      outputs->push_back(std::move(values));
    }
  }

 private:
  mindspore::Model model_;
  std::vector<mindspore::MSTensor> inputs_;
};

}  // namespace

std::unique_ptr<Backend> MakeMindSporeBackend(const char *model_path, int device_id) {
  return std::make_unique<MindSporeBackend>(model_path, device_id);
}

}  // namespace zoo
