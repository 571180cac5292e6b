// CPU backend: OpenCV's DNN module running the ONNX export.
//
// export.py rewrites the MindSpore ONNX patterns that OpenCV's importer rejects
// (src/deploy/onnx_compat.py), except ReLU6's opset-11 Clip, which onnxruntime
// fuses and OpenCV < 4.7 cannot read: run_infer_310.sh --backend=cpu runs a copy
// with it rebuilt (python -m src.deploy.onnx_compat). Tests check that the
// outputs match onnxruntime.
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "backend.h"

namespace zoo {
namespace {

std::string FirstLine(const std::string &text) { return text.substr(0, text.find('\n')); }

// OpenCV lists the outputs by layer name, not in the ONNX graph's order. export.py
// names them output_0, output_1, ... (src/deploy/onnx_compat.py), which gives the
// order back; a multi-output model without those names is refused, since
// writing its outputs in an arbitrary order would be scored wrongly.
std::vector<cv::String> OrderedOutputNames(const std::vector<cv::String> &names, const std::string &model_path) {
  if (names.size() <= 1) return names;
  std::vector<cv::String> ordered(names.size());
  for (const cv::String &name : names) {
    const std::string prefix = "output_";
    size_t index = names.size();
    if (name.compare(0, prefix.size(), prefix) == 0 && name.size() > prefix.size() &&
        name.size() <= prefix.size() + 6 &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
      index = std::stoul(name.substr(prefix.size()));
    }
    if (index >= names.size() || !ordered[index].empty()) {
      throw std::runtime_error("cannot tell the output order of '" + model_path + "': its " +
                               std::to_string(names.size()) + " outputs are not named output_0..output_" +
                               std::to_string(names.size() - 1) + " (found '" + name +
                               "'); re-export it with export.py, which names them");
    }
    ordered[index] = name;
  }
  return ordered;
}

class OpenCvBackend : public Backend {
 public:
  explicit OpenCvBackend(const std::string &model_path) {
    if (model_path.size() < 5 || model_path.compare(model_path.size() - 5, 5, ".onnx") != 0) {
      throw std::runtime_error("the cpu backend runs ONNX files; '" + model_path +
                               "' is not one (export it with python export.py ... --file_format=ONNX)");
    }
    try {
      net_ = cv::dnn::readNetFromONNX(model_path);
    } catch (const cv::Exception &e) {
      throw std::runtime_error("OpenCV " CV_VERSION " cannot import '" + model_path + "': " + e.what() +
                               " (export it with export.py; for OpenCV below 4.7 run the copy that "
                               "python -m src.deploy.onnx_compat MODEL.onnx COPY.onnx writes, or use "
                               "run_infer_310.sh --backend=cpu, which does that itself)");
    }
    if (net_.empty()) throw std::runtime_error("OpenCV read no network from '" + model_path + "'");
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    output_names_ = OrderedOutputNames(net_.getUnconnectedOutLayersNames(), model_path);
  }

  void Run(const float *input, size_t count, int height, int width,
           std::vector<std::vector<float>> *outputs) override {
    const int shape[4] = {1, 3, height, width};
    if (count != static_cast<size_t>(3) * height * width) throw std::runtime_error("input size does not match its shape");
    // OpenCV only reads the blob; the const_cast avoids a copy.
    cv::Mat blob(4, shape, CV_32F, const_cast<float *>(input));
    std::vector<cv::Mat> results;
    try {
      net_.setInput(blob);
      net_.forward(results, output_names_);
    } catch (const cv::Exception &e) {
      throw std::runtime_error(std::string("OpenCV DNN forward failed: ") + FirstLine(e.what()) +
                               " (input 1x3x" + std::to_string(height) + "x" + std::to_string(width) +
                               "; check that the model was exported with batch 1 and this image size. "
                               "Graphs OpenCV " CV_VERSION " cannot run, such as YOLOv3-Tiny's 5-D decode head, "
                               "run on onnxruntime instead: python infer.py / run_infer_310.sh --backend=python)");
    }
    outputs->clear();
    for (const cv::Mat &result : results) {
      cv::Mat values = result.isContinuous() ? result : result.clone();
      if (values.depth() != CV_32F) values.convertTo(values, CV_32F);
      const float *data = values.ptr<float>();
      outputs->emplace_back(data, data + values.total() * values.channels());
    }
  }

 private:
  cv::dnn::Net net_;
  std::vector<cv::String> output_names_;
};

}  // namespace

std::unique_ptr<Backend> MakeOpenCvBackend(const char *model_path, int num_threads) {
  if (num_threads > 0) cv::setNumThreads(num_threads);
  return std::make_unique<OpenCvBackend>(model_path);
}

const char *OpenCvVersion() { return CV_VERSION; }

}  // namespace zoo
