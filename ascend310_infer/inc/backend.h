// The two inference backends behind one interface.
//
// Only ABI-neutral types cross this boundary (const char *, std::vector,
// std::unique_ptr, std::runtime_error): the MindSpore backend may be compiled
// with the pre-C++11 libstdc++ string ABI that MindSpore's Ascend packages use,
// while the rest of the app uses the system default.
#ifndef ZOO_INFER_BACKEND_H_
#define ZOO_INFER_BACKEND_H_

#include <cstddef>
#include <memory>
#include <vector>

namespace zoo {

class Backend {
 public:
  virtual ~Backend() = default;
  // Run one float32 CHW image (batch 1). `outputs` gets one float32 vector per
  // model output, in the model's output order. Throws std::runtime_error.
  virtual void Run(const float *input, size_t count, int height, int width,
                   std::vector<std::vector<float>> *outputs) = 0;
};

// CPU: OpenCV DNN running an ONNX export.
std::unique_ptr<Backend> MakeOpenCvBackend(const char *model_path, int num_threads);
const char *OpenCvVersion();

#ifdef ZOO_WITH_MINDSPORE
// Ascend 310: MindSpore C++ inference API running a MINDIR export.
std::unique_ptr<Backend> MakeMindSporeBackend(const char *model_path, int device_id);
#endif

}  // namespace zoo

#endif  // ZOO_INFER_BACKEND_H_
