// Shared helpers of the inference app (see inc/utils.h).
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace fs = std::filesystem;

namespace zoo {

// ------------------------------------------------------------------ flags

Flags::Flags(int argc, char **argv, const std::vector<std::string> &known) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      values_["help"] = "1";
      continue;
    }
    if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "'; flags are written --key=value");
    size_t eq = arg.find('=');
    std::string key = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::string value = eq == std::string::npos ? "1" : arg.substr(eq + 1);
    if (std::find(known.begin(), known.end(), key) == known.end()) throw UsageError("unknown flag --" + key);
    values_[key] = value;
  }
}

std::string Flags::Get(const std::string &key, const std::string &fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

int Flags::GetInt(const std::string &key, int fallback) const {
  if (!Has(key)) return fallback;
  const std::string text = Get(key);
  char *end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') throw UsageError("--" + key + " expects an integer, got '" + text + "'");
  return static_cast<int>(value);
}

std::vector<float> Flags::GetFloats(const std::string &key, size_t count, const std::vector<float> &fallback) const {
  if (!Has(key)) return fallback;
  std::vector<float> values;
  for (const std::string &part : SplitList(Get(key), ',')) {
    char *end = nullptr;
    float value = std::strtof(part.c_str(), &end);
    if (part.empty() || *end != '\0') throw UsageError("--" + key + " expects numbers, got '" + part + "'");
    values.push_back(value);
  }
  if (values.size() != count) {
    throw UsageError("--" + key + " expects " + std::to_string(count) + " comma-separated numbers");
  }
  return values;
}

std::vector<std::string> SplitList(const std::string &text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

// ------------------------------------------------------------------ files

std::string FileStem(const std::string &path) { return fs::path(path).stem().string(); }

namespace {

bool EndsWithAny(const std::string &name, const std::vector<std::string> &suffixes) {
  for (const std::string &suffix : suffixes) {
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return true;
    }
  }
  return false;
}

// Sorted visible entries of a folder (byte order, like Python's sorted()).
std::vector<fs::path> SortedEntries(const fs::path &folder) {
  std::vector<fs::path> entries;
  for (const auto &entry : fs::directory_iterator(folder)) {
    if (entry.path().filename().string().rfind('.', 0) == 0) continue;
    entries.push_back(entry.path());
  }
  std::sort(entries.begin(), entries.end(),
            [](const fs::path &a, const fs::path &b) { return a.filename().string() < b.filename().string(); });
  return entries;
}

std::vector<fs::path> MatchingFiles(const fs::path &folder, const std::vector<std::string> &extensions) {
  std::vector<fs::path> files;
  for (const fs::path &entry : SortedEntries(folder)) {
    if (fs::is_regular_file(entry) && EndsWithAny(entry.filename().string(), extensions)) files.push_back(entry);
  }
  return files;
}

std::string JoinList(const std::vector<std::string> &items, const char *separator) {
  std::string text;
  for (const std::string &item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

}  // namespace

std::vector<InputFile> ListInputFiles(const std::string &folder, const std::vector<std::string> &extensions) {
  if (!fs::is_directory(folder)) throw std::runtime_error("data folder '" + folder + "' not found");
  std::vector<fs::path> subdirs;
  for (const fs::path &entry : SortedEntries(folder)) {
    if (fs::is_directory(entry)) subdirs.push_back(entry);
  }
  std::vector<InputFile> inputs;
  if (subdirs.empty()) {
    for (const fs::path &file : MatchingFiles(folder, extensions)) inputs.push_back({file.stem().string(), file.string(), -1});
  } else {
    // Class folders, as ImageFolderDataset numbers them; loose files beside them are ignored.
    for (size_t index = 0; index < subdirs.size(); ++index) {
      std::vector<fs::path> files = MatchingFiles(subdirs[index], extensions);
      if (files.empty()) {
        for (const fs::path &entry : SortedEntries(subdirs[index])) {
          if (fs::is_directory(entry)) {
            throw std::runtime_error("'" + subdirs[index].string() + "' holds folders but no " +
                                     JoinList(extensions, "/") +
                                     " files; point --dataset_path at the split folder itself (e.g. imagenet/val), "
                                     "whose sub-folders are the classes");
          }
        }
      }
      for (const fs::path &file : files) {
        inputs.push_back({file.stem().string(), file.string(), static_cast<int>(index)});
      }
    }
  }
  if (inputs.empty()) {
    throw std::runtime_error("no " + JoinList(extensions, "/") + " files in '" + folder + "' (nor in its sub-folders)");
  }
  std::map<std::string, std::string> seen;
  for (const InputFile &input : inputs) {
    auto found = seen.find(input.stem);
    if (found != seen.end()) {
      throw std::runtime_error("two input files have the same stem '" + input.stem + "': '" + found->second +
                               "' and '" + input.path +
                               "'; result files are named after the stem, so rename one of them");
    }
    seen[input.stem] = input.path;
  }
  return inputs;
}

// ------------------------------------------------------------------ preprocessing

namespace {

// Output size of MindSpore's Resize(size): the shorter side becomes `size`,
// the other is scaled in float32 and truncated. (Some MindSpore versions round
// with lround instead; 2.10's output shapes were checked to truncate, and
// tests/test_deploy_cpp.py compares the two pipelines image by image.)
cv::Size ShorterSideSize(int rows, int cols, int size) {
  if (rows < cols) return cv::Size(static_cast<int>(static_cast<float>(cols) / rows * size), size);
  return cv::Size(size, static_cast<int>(static_cast<float>(rows) / cols * size));
}

// MindSpore's CenterCrop: zero padding when the crop is larger than the image
// (the extra pixel on the top/left), then the crop at ((W - w) / 2, (H - h) / 2).
cv::Mat CenterCrop(const cv::Mat &image, int height, int width) {
  int pad_h = std::max(0, height - image.rows);
  int pad_w = std::max(0, width - image.cols);
  cv::Mat padded = image;
  if (pad_h > 0 || pad_w > 0) {
    cv::copyMakeBorder(image, padded, pad_h / 2 + pad_h % 2, pad_h / 2, pad_w / 2 + pad_w % 2, pad_w / 2,
                       cv::BORDER_CONSTANT, cv::Scalar::all(0));
  }
  cv::Rect box((padded.cols - width) / 2, (padded.rows - height) / 2, width, height);
  return padded(box);
}

// src/datasets/letterbox.py's letterbox: bilinear resize (in float32) keeping the
// aspect ratio, centred on a height x width canvas of fill * 255. Sizes round
// half to even, as Python's round().
cv::Mat Letterbox(const cv::Mat &rgb, int height, int width, float fill) {
  const double scale = std::min(static_cast<double>(width) / rgb.cols, static_cast<double>(height) / rgb.rows);
  const int new_w = std::min(width, std::max(1, static_cast<int>(std::nearbyint(rgb.cols * scale))));
  const int new_h = std::min(height, std::max(1, static_cast<int>(std::nearbyint(rgb.rows * scale))));
  cv::Mat as_float, resized;
  rgb.convertTo(as_float, CV_32FC3);
  cv::resize(as_float, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
  cv::Mat canvas(height, width, CV_32FC3, cv::Scalar::all(fill * 255.0f));
  resized.copyTo(canvas(cv::Rect((width - new_w) / 2, (height - new_h) / 2, new_w, new_h)));
  return canvas;
}

}  // namespace

std::vector<float> LoadImageTensor(const std::string &path, const PreprocessOptions &options) {
  // IGNORE_ORIENTATION: MindSpore's Decode does not apply EXIF rotation either.
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) throw std::runtime_error("cannot decode image '" + path + "'");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);

  const size_t plane = static_cast<size_t>(options.height) * options.width;
  std::vector<float> tensor(3 * plane);
  const std::string &mode = options.resize_mode;
  if (mode == "letterbox") {
    cv::Mat canvas = Letterbox(rgb, options.height, options.width, options.letterbox_fill);
    for (int y = 0; y < options.height; ++y) {
      const cv::Vec3f *row = canvas.ptr<cv::Vec3f>(y);
      for (int x = 0; x < options.width; ++x) {
        for (int c = 0; c < 3; ++c) {
          tensor[c * plane + static_cast<size_t>(y) * options.width + x] = (row[x][c] - options.mean[c]) / options.std[c];
        }
      }
    }
    return tensor;
  }
  cv::Size size(rgb.cols, rgb.rows);
  if (mode == "shorter") {
    size = ShorterSideSize(rgb.rows, rgb.cols, options.resize);
  } else if (mode == "square") {
    size = cv::Size(options.resize, options.resize);
  } else if (mode == "stretch") {
    size = cv::Size(options.width, options.height);
  } else if (mode != "none") {
    throw UsageError("--resize_mode must be shorter, square, stretch, letterbox or none, got '" + mode + "'");
  }
  cv::Mat resized = rgb;
  if (size != cv::Size(rgb.cols, rgb.rows)) cv::resize(rgb, resized, size, 0, 0, cv::INTER_LINEAR);
  cv::Mat cropped = CenterCrop(resized, options.height, options.width);

  for (int y = 0; y < options.height; ++y) {
    const cv::Vec3b *row = cropped.ptr<cv::Vec3b>(y);
    for (int x = 0; x < options.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        tensor[c * plane + static_cast<size_t>(y) * options.width + x] =
            (static_cast<float>(row[x][c]) - options.mean[c]) / options.std[c];
      }
    }
  }
  return tensor;
}

std::vector<float> LoadBinTensor(const std::string &path, size_t count) {
  std::error_code error;
  const auto bytes = fs::file_size(path, error);
  if (error) throw std::runtime_error("cannot read '" + path + "': " + error.message());
  if (bytes != count * sizeof(float)) {
    throw std::runtime_error("input file '" + path + "' has " + std::to_string(bytes) + " bytes; the network input (" +
                             std::to_string(count) + " float32) has " + std::to_string(count * sizeof(float)) +
                             " (was it preprocessed for another image size?)");
  }
  std::vector<float> values(count);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char *>(values.data()), static_cast<std::streamsize>(bytes))) {
    throw std::runtime_error("cannot read '" + path + "'");
  }
  return values;
}

// ------------------------------------------------------------------ outputs

void WriteFloats(const std::string &path, const std::vector<float> &values) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write '" + path + "' (disk full or no permission?)");
}

void PrepareOutputDirs(const std::string &output_dir) {
  const fs::path results = fs::path(output_dir) / "result_Files";
  std::error_code error;
  fs::create_directories(results, error);
  if (!error) fs::create_directories(fs::path(output_dir) / "time_Result", error);
  if (error) throw std::runtime_error("cannot create result folders in '" + output_dir + "': " + error.message());
  for (const auto &entry : fs::directory_iterator(results)) {
    if (entry.is_regular_file() && entry.path().extension() == ".bin") fs::remove(entry.path());
  }
}

std::string WriteResult(const std::string &output_dir, const std::string &stem, size_t index,
                        const std::vector<float> &values) {
  const fs::path path = fs::path(output_dir) / "result_Files" / (stem + "_" + std::to_string(index) + ".bin");
  WriteFloats(path.string(), values);
  return path.string();
}

size_t CountNonFinite(const std::vector<float> &values) {
  return static_cast<size_t>(std::count_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); }));
}

bool ReadSpecImageSize(const std::string &model_path, int *height, int *width) {
  const std::string spec_path = model_path + ".json";
  std::ifstream in(spec_path);
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  const std::string spec = text.str();
  // export.py writes "image_size": [H, W] (json.dumps); no JSON library needed for two integers.
  const size_t key = spec.find("\"image_size\"");
  const size_t open = key == std::string::npos ? key : spec.find('[', key);
  if (open == std::string::npos) throw std::runtime_error("deploy spec '" + spec_path + "' has no \"image_size\": [H, W]");
  const char *cursor = spec.c_str() + open + 1;
  char *end = nullptr;
  const long h = std::strtol(cursor, &end, 10);
  while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t' || *end == ',') ++end;
  const char *after_h = end;
  const long w = std::strtol(after_h, &end, 10);
  if (end == after_h || h <= 0 || w <= 0) {
    throw std::runtime_error("deploy spec '" + spec_path + "' has an unreadable \"image_size\" (expected [H, W])");
  }
  *height = static_cast<int>(h);
  *width = static_cast<int>(w);
  return true;
}

std::string WriteTiming(const std::string &output_dir, double average_ms, size_t count) {
  char line[160];
  std::snprintf(line, sizeof(line), "NN inference cost average time: %.3f ms of infer_count %zu", average_ms, count);
  const fs::path path = fs::path(output_dir) / "time_Result" / "test_perform_static.txt";
  std::ofstream out(path, std::ios::trunc);
  out << line << "\n";
  if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
  return line;
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  const uint32_t mantissa = half & 0x3FFu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // subnormal
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

}  // namespace zoo
