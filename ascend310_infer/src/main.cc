// The model zoo's inference app: one program, two backends.
//
//   main --backend=cpu       --model_path=m.onnx   --dataset_path=DIR [preprocessing flags]
//   main --backend=ascend310 --model_path=m.mindir --dataset_path=DIR --device_id=0 [...]
//
// For every input file (sorted; flat folder or class sub-folders) it builds
// the network input (decode/resize/crop/normalise like the Python eval
// transforms, or a preprocessed float32 .bin as-is), runs the model, and
// writes result_Files/<stem>_<i>.bin per output; the average inference time
// goes to time_Result/test_perform_static.txt. scripts/run_infer_310.sh
// derives the preprocessing flags from the export's .json spec; an image size
// that contradicts that spec is refused, and so is a run whose outputs hold
// NaN/Inf (none of its result files are kept).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "utils.h"

namespace {

std::string JoinFloats(const std::vector<float> &values) {
  std::string text;
  for (float value : values) {
    char number[32];
    std::snprintf(number, sizeof(number), "%g", value);
    text += (text.empty() ? "" : ",") + std::string(number);
  }
  return text;
}

const char kUsage[] =
    "usage: main --backend=cpu|ascend310|none --model_path=FILE --dataset_path=DIR [flags]\n"
    "\n"
    "  --backend=cpu          OpenCV DNN on an ONNX export (default)\n"
    "  --backend=ascend310    MindSpore C++ API on a MINDIR export (Ascend builds only)\n"
    "  --backend=none         preprocess only (with --dump_inputs)\n"
    "  --model_path=FILE      exported model (--mindir_path is accepted too)\n"
    "  --dataset_path=DIR     images or .bin tensors, flat or in class sub-folders\n"
    "  --input_format=image|bin   decode images, or feed float32 CHW .bin files as-is (default image)\n"
    "  --image_height=224 --image_width=224   network input size (must equal <model_path>.json's image_size)\n"
    "  --resize=256 --resize_mode=shorter|square|stretch|letterbox|none   eval resize before the center crop\n"
    "  --letterbox_fill=0.5   letterbox padding as a fraction of 255, before mean/std\n"
    "  --mean=R,G,B --std=R,G,B   normalisation on the 0-255 scale (default ImageNet; std non-zero)\n"
    "  --extensions=.JPEG,.jpg,...   image file endings (case-sensitive)\n"
    "  --device_id=0          Ascend device\n"
    "  --num_threads=0        CPU threads for OpenCV (0 = OpenCV's default)\n"
    "  --output_dir=.         where result_Files/ and time_Result/ are written\n"
    "  --dump_inputs=DIR      also write each network input as DIR/<stem>.bin\n"
    "  --version              print the backends this build has\n";

const std::vector<std::string> kFlags = {
    "backend",  "model_path", "mindir_path", "dataset_path", "input_format", "image_height", "image_width",
    "resize",   "resize_mode", "letterbox_fill", "mean",       "std",          "extensions",   "device_id",    "num_threads",
    "output_dir", "dump_inputs", "version", "help"};

const std::vector<std::string> kDefaultExtensions = {".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG", ".bmp"};

std::string Backends() {
  std::string text = std::string("cpu (OpenCV ") + zoo::OpenCvVersion() + ")";
#ifdef ZOO_WITH_MINDSPORE
  text += ", ascend310 (MindSpore C++ API)";
#else
  text += "; ascend310 not built (no MindSpore C++ inference API found at build time)";
#endif
  return text;
}

std::unique_ptr<zoo::Backend> OpenBackend(const std::string &name, const std::string &model_path, int device_id,
                                          int num_threads) {
  if (name == "none") return nullptr;
  if (model_path.empty()) throw zoo::UsageError("--model_path is required");
  if (name == "cpu") return zoo::MakeOpenCvBackend(model_path.c_str(), num_threads);
  if (name == "ascend310") {
#ifdef ZOO_WITH_MINDSPORE
    return zoo::MakeMindSporeBackend(model_path.c_str(), device_id);
#else
    (void)device_id;
    throw std::runtime_error(
        "this build has no ascend310 backend: MindSpore's C++ inference API (include/api/model.h, "
        "lib/libmindspore.so) was not found when ascend310_infer/build.sh ran; on an Ascend host install the "
        "Ascend build of MindSpore and rebuild (MINDSPORE_PATH=<site-packages>/mindspore bash build.sh), "
        "or use --backend=cpu with an ONNX export");
#endif
  }
  throw zoo::UsageError("--backend must be cpu, ascend310 or none, got '" + name + "'");
}

int Run(const zoo::Flags &flags) {
  const std::string backend_name = flags.Get("backend", "cpu");
  const std::string model_path = flags.Get("model_path", flags.Get("mindir_path"));
  const std::string dataset_path = flags.Get("dataset_path");
  const std::string input_format = flags.Get("input_format", "image");
  const std::string output_dir = flags.Get("output_dir", ".");
  const std::string dump_dir = flags.Get("dump_inputs");
  if (dataset_path.empty()) throw zoo::UsageError("--dataset_path is required");
  if (input_format != "image" && input_format != "bin") {
    throw zoo::UsageError("--input_format must be image or bin, got '" + input_format + "'");
  }
  if (backend_name == "none" && dump_dir.empty()) throw zoo::UsageError("--backend=none needs --dump_inputs=DIR");

  zoo::PreprocessOptions options;
  options.height = flags.GetInt("image_height", 224);
  options.width = flags.GetInt("image_width", 224);
  options.resize = flags.GetInt("resize", 256);
  options.resize_mode = flags.Get("resize_mode", "shorter");
  options.letterbox_fill = flags.GetFloats("letterbox_fill", 1, {options.letterbox_fill})[0];
  options.mean = flags.GetFloats("mean", 3, options.mean);
  options.std = flags.GetFloats("std", 3, options.std);
  if (options.height <= 0 || options.width <= 0 || options.resize <= 0) {
    throw zoo::UsageError("--image_height, --image_width and --resize must be positive");
  }
  for (size_t c = 0; c < 3; ++c) {
    // A zero std divides every pixel by zero: NaN/Inf inputs, then NaN results.
    if (options.std[c] == 0.0f || !std::isfinite(options.std[c]) || !std::isfinite(options.mean[c])) {
      throw zoo::UsageError("--mean and --std must be finite and --std non-zero, got --mean=" +
                            JoinFloats(options.mean) + " --std=" + JoinFloats(options.std));
    }
  }
  int spec_height = 0, spec_width = 0;
  if (backend_name != "none" && zoo::ReadSpecImageSize(model_path, &spec_height, &spec_width) &&
      (spec_height != options.height || spec_width != options.width)) {
    throw std::runtime_error("'" + model_path + "' was exported for " + std::to_string(spec_height) + "x" +
                             std::to_string(spec_width) + " inputs (its .json spec) but --image_height/--image_width "
                             "give " + std::to_string(options.height) + "x" + std::to_string(options.width) +
                             "; pass --image_height=" + std::to_string(spec_height) +
                             " --image_width=" + std::to_string(spec_width) + " (run_infer_310.sh takes them from the spec)");
  }
  std::vector<std::string> extensions =
      input_format == "bin" ? std::vector<std::string>{".bin"}
                            : (flags.Has("extensions") ? zoo::SplitList(flags.Get("extensions"), ',') : kDefaultExtensions);

  const std::vector<zoo::InputFile> inputs = zoo::ListInputFiles(dataset_path, extensions);
  std::unique_ptr<zoo::Backend> backend =
      OpenBackend(backend_name, model_path, flags.GetInt("device_id", 0), flags.GetInt("num_threads", 0));
  if (backend) zoo::PrepareOutputDirs(output_dir);
  if (!dump_dir.empty()) std::filesystem::create_directories(dump_dir);

  const size_t count = static_cast<size_t>(3) * options.height * options.width;
  double total_ms = 0.0;
  std::vector<std::vector<float>> outputs;
  // Non-finite outputs are never written; if any input gives one, the files this
  // run wrote are removed too, so postprocess cannot score a partial folder.
  std::vector<std::string> written;
  size_t non_finite_inputs = 0;
  std::string first_non_finite;
  for (const zoo::InputFile &input : inputs) {
    std::vector<float> tensor = input_format == "bin" ? zoo::LoadBinTensor(input.path, count)
                                                      : zoo::LoadImageTensor(input.path, options);
    if (!dump_dir.empty()) zoo::WriteFloats(dump_dir + "/" + input.stem + ".bin", tensor);
    if (!backend) continue;
    const auto start = std::chrono::steady_clock::now();
    try {
      backend->Run(tensor.data(), tensor.size(), options.height, options.width, &outputs);
    } catch (const std::exception &e) {
      throw std::runtime_error(std::string(e.what()) + " [input '" + input.path + "']");
    }
    total_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    size_t non_finite = 0;
    for (const std::vector<float> &output : outputs) non_finite += zoo::CountNonFinite(output);
    if (non_finite > 0) {
      if (non_finite_inputs++ == 0) first_non_finite = input.path;
      continue;
    }
    for (size_t i = 0; i < outputs.size(); ++i) written.push_back(zoo::WriteResult(output_dir, input.stem, i, outputs[i]));
  }
  if (non_finite_inputs > 0) {
    for (const std::string &path : written) std::filesystem::remove(path);
    throw std::runtime_error("the model gave NaN or Inf outputs for " + std::to_string(non_finite_inputs) + " of " +
                             std::to_string(inputs.size()) + " input(s), first '" + first_non_finite +
                             "'; no result files were kept (check --mean/--std and the export: "
                             "does python infer.py give finite outputs?)");
  }
  if (!backend) {
    std::printf("wrote %zu preprocessed inputs to %s\n", inputs.size(), dump_dir.c_str());
    return 0;
  }
  std::printf("%s\n", zoo::WriteTiming(output_dir, total_ms / inputs.size(), inputs.size()).c_str());
  std::printf("backend %s: %zu inputs from %s, %zu output(s) each, results in %s/result_Files\n",
              backend_name.c_str(), inputs.size(), dataset_path.c_str(), outputs.size(), output_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  try {
    zoo::Flags flags(argc, argv, kFlags);
    if (flags.Has("help")) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (flags.Has("version")) {
      std::printf("zoo inference app; backends: %s\n", Backends().c_str());
      return 0;
    }
    return Run(flags);
  } catch (const zoo::UsageError &e) {
    std::fprintf(stderr, "main: error: %s\n\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "main: error: %s\n", e.what());
    return 1;
  }
}
