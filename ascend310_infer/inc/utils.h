// Helpers shared by both backends of the inference app: flags, file walking,
// image preprocessing, result / timing files. Mirrors src/deploy/common.py and
// the Python eval transforms; keep the two in step.
#ifndef ZOO_INFER_UTILS_H_
#define ZOO_INFER_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace zoo {

// A wrong or missing command-line flag (exit status 2, like the scripts).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --key=value flags. Unknown keys and positional arguments are usage errors.
class Flags {
 public:
  Flags(int argc, char **argv, const std::vector<std::string> &known);
  bool Has(const std::string &key) const { return values_.count(key) > 0; }
  std::string Get(const std::string &key, const std::string &fallback = "") const;
  int GetInt(const std::string &key, int fallback) const;
  // A comma-separated list of exactly `count` numbers.
  std::vector<float> GetFloats(const std::string &key, size_t count, const std::vector<float> &fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

std::vector<std::string> SplitList(const std::string &text, char separator);

// One input: the file name without its last extension is the stem that names
// the result files; class_index is the sorted class-folder index (-1 when flat).
struct InputFile {
  std::string stem;
  std::string path;
  int class_index;
};

// Sorted input files of `folder`: directly inside it, or (when it has
// sub-folders) inside each class sub-folder, sorted by folder then file name.
// Hidden files are skipped; only names ending in one of `extensions` count.
// Throws when nothing is found or two files share a stem.
std::vector<InputFile> ListInputFiles(const std::string &folder, const std::vector<std::string> &extensions);

std::string FileStem(const std::string &path);

// The evaluation transforms of src/datasets (ImageNet and COCO):
//   decode (RGB) -> resize -> center crop -> (x - mean) / std -> CHW.
// resize_mode: "shorter" resizes the shorter side to `resize` (keeping the
// aspect ratio, rounded as MindSpore's Resize does), "square" to resize x
// resize, "stretch" straight to height x width (no crop), "none" keeps the size,
// "letterbox" fits the image keeping its aspect ratio on a height x width canvas of
// letterbox_fill * 255 before the mean/std (src/datasets/letterbox.py; no crop).
struct PreprocessOptions {
  int height = 224;
  int width = 224;
  int resize = 256;
  std::string resize_mode = "shorter";
  float letterbox_fill = 0.5f;
  std::vector<float> mean = {123.675f, 116.28f, 103.53f};
  std::vector<float> std = {58.395f, 57.12f, 57.375f};
};

// Network input (float32, 3 x height x width) of one image file.
std::vector<float> LoadImageTensor(const std::string &path, const PreprocessOptions &options);

// A preprocessed float32 tensor file of exactly `count` values.
std::vector<float> LoadBinTensor(const std::string &path, size_t count);

void WriteFloats(const std::string &path, const std::vector<float> &values);

// <output_dir>/result_Files (old .bin files removed: postprocess would count
// them) and <output_dir>/time_Result.
void PrepareOutputDirs(const std::string &output_dir);

// <output_dir>/result_Files/<stem>_<index>.bin; returns that path.
std::string WriteResult(const std::string &output_dir, const std::string &stem, size_t index,
                 const std::vector<float> &values);

// <output_dir>/time_Result/test_perform_static.txt:
// "NN inference cost average time: X ms of infer_count N"
std::string WriteTiming(const std::string &output_dir, double average_ms, size_t count);

// How many of `values` are NaN or infinite.
size_t CountNonFinite(const std::vector<float> &values);

// The network input size ("image_size": [H, W]) of the deploy spec export.py
// writes beside the model as <model_path>.json; false when there is no spec.
bool ReadSpecImageSize(const std::string &model_path, int *height, int *width);

// IEEE half -> float, for backends whose outputs are float16.
float HalfToFloat(uint16_t half);

}  // namespace zoo

#endif  // ZOO_INFER_UTILS_H_
