// The zoo's CPU kernels: MindSpore AOT custom operators (ops.Custom, func_type="aot") that run
// convolution, max pooling and LeakyReLU on the zoo's own copy of oneDNN, which dispatches to the
// CPU's full ISA and keeps convolutions in oneDNN's blocked layouts inside each call. MindSpore's
// bundled oneDNN stays capped at AVX2 (see src/cpu_env.py); src/kernels/build.py renames this copy
// so the two never meet.
//
// Every entry point has MindSpore's AOT signature. Tensors are plain (NCHW / OIHW) float32 as
// MindSpore holds them. The last input is a small "geometry" tensor written by src/kernels/cells.py:
//   convolution:  int64 [stride_h, stride_w, same, pad_top, pad_bottom, pad_left, pad_right,
//                        x_blocked, y_blocked]
//   max pooling:  int64 [kernel_h, kernel_w, stride_h, stride_w, same, pad_top, pad_bottom, pad_left, pad_right,
//                        blocked]
//   LeakyReLU:    float32 [alpha]
//   BatchNorm:    float32 [epsilon, blocked]
//   fused inference convolution: the convolution's geometry, then float32 settings
//                 [activation, alpha, beta, epsilon] (see fused_inference)
// "blocked" tensors keep MindSpore's NCHW shape but hold oneDNN's channel-blocked layout
// (ZooActivationBlock(): nChw16c on AVX-512, nChw8c on AVX2), so that a chain of these kernels
// (convolution, ReLU, max pooling) skips the reorders to and from NCHW between layers; the
// element count is the same because the channel count is a multiple of the block. Only
// src/kernels.keep_blocked_layouts sets the flags, and only inside a sequence that ends plain.
// "same" padding follows MindSpore: total = max(0, (ceil(H / s) - 1) * s + k - H), the larger
// half at the bottom/right. Primitives are created once per shape and cached.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

engine &cpu() {
  static engine e(engine::kind::cpu, 0);
  return e;
}

std::mutex error_mutex;
std::string last_error;

int fail(const std::string &what) {
  std::lock_guard<std::mutex> lock(error_mutex);
  last_error = what;
  return 1;
}

bool is_f32(const char *dtype) { return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0; }

// Padding of one spatial axis: (before, after).
void axis_padding(int64_t size, int64_t kernel, int64_t stride, bool same, int64_t before, int64_t after,
                  int64_t *out_before, int64_t *out_after) {
  if (same) {
    int64_t out = (size + stride - 1) / stride;
    int64_t total = std::max<int64_t>(0, (out - 1) * stride + kernel - size);
    before = total / 2;
    after = total - before;
  }
  *out_before = before;
  *out_after = after;
}

std::string join(std::initializer_list<int64_t> values) {
  std::string s;
  for (int64_t v : values) s += std::to_string(v) + ",";
  return s;
}

// The primitives for `key`, created on first use. oneDNN plans a primitive's work split and its
// per-thread buffers (e.g. the weight-gradient reductions) for the OpenMP thread count at its
// creation, and it expects to run with that count; ZooSetThreads can change the count, so it is
// part of the key.
template <typename T>
T *cached(std::unordered_map<std::string, T *> &cache, std::mutex &mutex, const std::string &key,
          T *(*create)(const std::string &, const void *), const void *arg) {
  const std::string full_key = key + "threads=" + std::to_string(omp_get_max_threads());
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(full_key);
  if (it != cache.end()) return it->second;
  T *made = create(full_key, arg);
  cache[full_key] = made;
  return made;
}

// Cached primitives run on whichever MindSpore thread calls them. oneDNN's own ("library")
// scratchpad is a buffer of the thread that created the primitive, so another thread running it
// wrote past its own smaller buffer (seen: a heap corruption after a network ran in PyNative
// mode, on MindSpore's launch thread, and then in graph mode, on its actor thread). Every cached
// primitive therefore takes its scratchpad from the caller: one buffer per calling thread, grown
// as needed, used by one primitive at a time (CPU streams execute synchronously).
primitive_attr caller_scratchpad(primitive_attr attr = primitive_attr()) {
  attr.set_scratchpad_mode(scratchpad_mode::user);
  return attr;
}

memory scratchpad(const memory::desc &md) {
  struct Buffer {
    void *data = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  const size_t need = md.get_size();
  if (need > buffer.size) {
    std::free(buffer.data);
    buffer.size = (need + 63) / 64 * 64;
    buffer.data = std::aligned_alloc(64, buffer.size);
    if (buffer.data == nullptr) {
      buffer.size = 0;
      throw std::bad_alloc();
    }
  }
  return memory(md, cpu(), buffer.data);
}

// Executes a cached primitive with the calling thread's scratchpad.
template <typename Pd>
void execute(stream &s, const primitive &prim, const Pd &pd, std::unordered_map<int, memory> args) {
  args.insert({DNNL_ARG_SCRATCHPAD, scratchpad(pd.scratchpad_desc())});
  prim.execute(s, args);
}

memory::desc plain(const memory::dims &dims) {
  return memory::desc(dims, dt::f32, dims.size() == 5 ? tag::abcde : tag::abcd);
}

// The channel-blocked activation layout oneDNN's convolutions pick on this CPU (tag::undef: none).
tag activation_tag() {
  static const tag chosen = [] {
    memory::dims src = {1, 64, 28, 28}, wei = {64, 64, 3, 3};
    auto any = [](const memory::dims &d) { return memory::desc(d, dt::f32, tag::any); };
    convolution_forward::primitive_desc pd(cpu(), prop_kind::forward_training, algorithm::convolution_direct,
                                           any(src), any(wei), any(src), {1, 1}, {1, 1}, {1, 1});
    for (tag t : {tag::nChw16c, tag::nChw8c})
      if (pd.src_desc() == memory::desc(src, dt::f32, t) && pd.dst_desc() == memory::desc(src, dt::f32, t)) return t;
    return tag::undef;
  }();
  return chosen;
}

// How a tensor MindSpore holds is laid out: plain NCHW/OIHW, or the blocked activation layout.
memory::desc user_desc(const memory::dims &dims, bool blocked) {
  return blocked ? memory::desc(dims, dt::f32, activation_tag()) : plain(dims);
}

// from -> to, converting the layout (oneDNN's primitive cache may hand back a reorder another
// thread created, so it too takes the caller's scratchpad).
void copy(stream &s, memory &from, memory &to) {
  reorder::primitive_desc pd(from, to, caller_scratchpad());
  execute(s, reorder(pd), pd, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

// The user's buffer viewed in the primitive's layout: the buffer itself when the layouts agree,
// else a new buffer (filled by a reorder when `fill`).
memory in_layout(stream &s, const memory::desc &want, const memory::dims &dims, void *data, bool fill,
                 bool blocked = false) {
  memory user(user_desc(dims, blocked), cpu(), data);
  if (want == user.get_desc()) return user;
  memory converted(want, cpu());
  if (fill) copy(s, user, converted);
  return converted;
}

void to_user(stream &s, memory &result, const memory::dims &dims, void *data, bool blocked = false) {
  if (result.get_data_handle() == data) return;
  memory user(user_desc(dims, blocked), cpu(), data);
  copy(s, result, user);
}

// ---------------------------------------------------------------- convolution
struct ConvGeometry {
  memory::dims src, wei, dst, strides, pad_before, pad_after;
  bool src_blocked, dst_blocked;
  std::string key;
};

ConvGeometry conv_geometry(const int64_t *x, const int64_t *w, const int64_t *g) {
  ConvGeometry c;
  int64_t groups = x[1] / w[1];
  int64_t pt, pb, pl, pr;
  axis_padding(x[2], w[2], g[0], g[2] != 0, g[3], g[4], &pt, &pb);
  axis_padding(x[3], w[3], g[1], g[2] != 0, g[5], g[6], &pl, &pr);
  int64_t oh = (x[2] + pt + pb - w[2]) / g[0] + 1, ow = (x[3] + pl + pr - w[3]) / g[1] + 1;
  c.src = {x[0], x[1], x[2], x[3]};
  if (groups == 1)
    c.wei = {w[0], w[1], w[2], w[3]};
  else
    c.wei = {groups, w[0] / groups, w[1], w[2], w[3]};
  c.dst = {x[0], w[0], oh, ow};
  c.strides = {g[0], g[1]};
  c.pad_before = {pt, pl};
  c.pad_after = {pb, pr};
  c.src_blocked = g[7] != 0;
  c.dst_blocked = g[8] != 0;
  c.key = join({x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3], g[0], g[1], pt, pb, pl, pr, g[7], g[8]});
  return c;
}

struct ConvPrimitives {
  convolution_forward::primitive_desc fwd_pd;
  convolution_forward fwd;
  convolution_forward::primitive_desc infer_pd;
  convolution_forward infer;
  convolution_backward_data::primitive_desc bwd_data_pd;
  convolution_backward_data bwd_data;
  convolution_backward_weights::primitive_desc bwd_weights_pd;
  convolution_backward_weights bwd_weights;
};

bool is_reference(const std::string &impl) { return impl.rfind("ref", 0) == 0; }

// `make(src, dst)` with the run's layouts, unless oneDNN has only its reference kernel for them
// (seen with AVX2: the weight gradient of a 3x3 convolution on 2x2 blocked inputs, 5 s instead
// of milliseconds); then with layouts oneDNN picks, which in_layout reorders to and from.
template <typename Pd, typename Make>
Pd avoiding_reference(Make make, const memory::desc &src, const memory::desc &dst, const ConvGeometry &c) {
  Pd pd = make(src, dst);
  if (!is_reference(pd.impl_info_str()) || !(c.src_blocked || c.dst_blocked)) return pd;
  try {
    Pd free_pd = make(memory::desc(c.src, dt::f32, tag::any), memory::desc(c.dst, dt::f32, tag::any));
    if (!is_reference(free_pd.impl_info_str())) return free_pd;
  } catch (const dnnl::error &) {
  }
  return pd;
}

ConvPrimitives *make_conv(const std::string &, const void *arg) {
  const ConvGeometry &c = *static_cast<const ConvGeometry *>(arg);
  // A blocked side is fixed to the layout of the run (for inference oneDNN would otherwise pick
  // NHWC and reorder around every layer); a plain side is left to oneDNN.
  auto activation = [](const memory::dims &dims, bool blocked) {
    return blocked ? user_desc(dims, true) : memory::desc(dims, dt::f32, tag::any);
  };
  auto src = activation(c.src, c.src_blocked), wei = memory::desc(c.wei, dt::f32, tag::any),
       dst = activation(c.dst, c.dst_blocked);
  auto *p = new ConvPrimitives();
  auto forward = [&](prop_kind kind) {
    return [&, kind](const memory::desc &x, const memory::desc &y) {
      return convolution_forward::primitive_desc(cpu(), kind, algorithm::convolution_direct, x, wei, y, c.strides,
                                                 c.pad_before, c.pad_after, caller_scratchpad());
    };
  };
  p->fwd_pd = avoiding_reference<convolution_forward::primitive_desc>(forward(prop_kind::forward_training), src,
                                                                     dst, c);
  p->fwd = convolution_forward(p->fwd_pd);
  p->infer_pd = avoiding_reference<convolution_forward::primitive_desc>(forward(prop_kind::forward_inference), src,
                                                                       dst, c);
  p->infer = convolution_forward(p->infer_pd);
  p->bwd_data_pd = avoiding_reference<convolution_backward_data::primitive_desc>(
      [&](const memory::desc &x, const memory::desc &y) {
        return convolution_backward_data::primitive_desc(cpu(), algorithm::convolution_direct, x, wei, y, c.strides,
                                                         c.pad_before, c.pad_after, p->fwd_pd, caller_scratchpad());
      },
      src, dst, c);
  p->bwd_data = convolution_backward_data(p->bwd_data_pd);
  p->bwd_weights_pd = avoiding_reference<convolution_backward_weights::primitive_desc>(
      [&](const memory::desc &x, const memory::desc &y) {
        return convolution_backward_weights::primitive_desc(cpu(), algorithm::convolution_direct, x, wei, y,
                                                            c.strides, c.pad_before, c.pad_after, p->fwd_pd,
                                                            caller_scratchpad());
      },
      src, dst, c);
  p->bwd_weights = convolution_backward_weights(p->bwd_weights_pd);
  return p;
}

std::mutex conv_mutex;
std::unordered_map<std::string, ConvPrimitives *> conv_cache;

ConvPrimitives *conv_primitives(const ConvGeometry &c) {
  return cached(conv_cache, conv_mutex, c.key, make_conv, &c);
}

bool conv_args_ok(int nparam, const char **dtypes) {
  for (int i = 0; i < nparam; ++i)
    if (i != nparam - 2 && !is_f32(dtypes[i])) return false;  // nparam - 2: the geometry input
  return true;
}

int conv_forward(int nparam, void **params, int64_t **shapes, const char **dtypes, bool training) {
  if (nparam != 4 || !conv_args_ok(nparam, dtypes)) return fail("convolution: expects float32 x, w, geometry -> y");
  ConvGeometry c = conv_geometry(shapes[0], shapes[1], static_cast<const int64_t *>(params[2]));
  ConvPrimitives *p = conv_primitives(c);
  auto &pd = training ? p->fwd_pd : p->infer_pd;
  stream s(cpu());
  memory src = in_layout(s, pd.src_desc(), c.src, params[0], true, c.src_blocked);
  memory wei = in_layout(s, pd.weights_desc(), c.wei, params[1], true);
  memory dst = in_layout(s, pd.dst_desc(), c.dst, params[3], false, c.dst_blocked);
  execute(s, training ? p->fwd : p->infer, pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
  to_user(s, dst, c.dst, params[3], c.dst_blocked);
  s.wait();
  return 0;
}

// x, w, dy, geometry -> dx (`data`) or dw.
int conv_backward(int nparam, void **params, int64_t **shapes, const char **dtypes, bool data) {
  if (nparam != 5 || !conv_args_ok(nparam, dtypes)) return fail("convolution backward: expects float32 x, w, dy, geometry");
  ConvGeometry c = conv_geometry(shapes[0], shapes[1], static_cast<const int64_t *>(params[3]));
  ConvPrimitives *p = conv_primitives(c);
  stream s(cpu());
  if (data) {
    memory dy = in_layout(s, p->bwd_data_pd.diff_dst_desc(), c.dst, params[2], true, c.dst_blocked);
    memory wei = in_layout(s, p->bwd_data_pd.weights_desc(), c.wei, params[1], true);
    memory dx = in_layout(s, p->bwd_data_pd.diff_src_desc(), c.src, params[4], false, c.src_blocked);
    execute(s, p->bwd_data, p->bwd_data_pd, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dx}});
    to_user(s, dx, c.src, params[4], c.src_blocked);
  } else {
    memory x = in_layout(s, p->bwd_weights_pd.src_desc(), c.src, params[0], true, c.src_blocked);
    memory dy = in_layout(s, p->bwd_weights_pd.diff_dst_desc(), c.dst, params[2], true, c.dst_blocked);
    memory dw = in_layout(s, p->bwd_weights_pd.diff_weights_desc(), c.wei, params[4], false);
    execute(s, p->bwd_weights, p->bwd_weights_pd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
    to_user(s, dw, c.wei, params[4]);
  }
  s.wait();
  return 0;
}

// ---------------------------------------------------------------- fused inference convolution
// activation(BatchNorm(conv(x))) at inference as one primitive: BatchNorm's per-channel scale
// gamma / sqrt(var + eps) is applied in the reorder of the weights that every call does anyway,
// its shift beta - mean * scale is the convolution's bias, and the activation is a post-op. At
// batch 1 this removes the BatchNorm and activation operators (and their passes over memory)
// that otherwise follow every convolution.
enum Activation { kNoActivation = 0, kRelu = 1, kClip = 2 };

struct FusedSettings {
  bool batch_norm;
  int activation;
  float alpha, beta, epsilon;  // relu: negative slope alpha; clip: [alpha, beta]
};

FusedSettings fused_settings(bool batch_norm, const float *k) {
  return FusedSettings{batch_norm, static_cast<int>(k[0]), k[1], k[2], k[3]};
}

int32_t float_bits(float value) {
  int32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

struct FusedPrimitives {
  convolution_forward::primitive_desc pd;
  convolution_forward conv;
  reorder::primitive_desc scale_weights_pd;
  reorder scale_weights;  // plain weights -> the primitive's layout, times the BatchNorm scale
};

struct FusedKey {
  const ConvGeometry *c;
  FusedSettings f;
};

// Weights as MindSpore holds them: OIHW, or (groups, O/groups, I, H, W) for grouped layers.
memory::desc user_weights(const ConvGeometry &c) { return plain(c.wei); }

FusedPrimitives *make_fused(const std::string &, const void *arg) {
  const FusedKey &k = *static_cast<const FusedKey *>(arg);
  const ConvGeometry &c = *k.c;
  post_ops ops;
  if (k.f.activation == kRelu) ops.append_eltwise(algorithm::eltwise_relu, k.f.alpha, 0.0f);
  if (k.f.activation == kClip) ops.append_eltwise(algorithm::eltwise_clip, k.f.alpha, k.f.beta);
  primitive_attr attr = caller_scratchpad();
  attr.set_post_ops(ops);
  auto activation = [](const memory::dims &dims, bool blocked) {
    return blocked ? user_desc(dims, true) : memory::desc(dims, dt::f32, tag::any);
  };
  auto wei = memory::desc(c.wei, dt::f32, tag::any);
  auto bias = memory::desc({c.dst[1]}, dt::f32, tag::a);
  auto *p = new FusedPrimitives();
  p->pd = avoiding_reference<convolution_forward::primitive_desc>(
      [&](const memory::desc &x, const memory::desc &y) {
        if (k.f.batch_norm)
          return convolution_forward::primitive_desc(cpu(), prop_kind::forward_inference,
                                                     algorithm::convolution_direct, x, wei, bias, y, c.strides,
                                                     c.pad_before, c.pad_after, attr);
        return convolution_forward::primitive_desc(cpu(), prop_kind::forward_inference, algorithm::convolution_direct,
                                                   x, wei, y, c.strides, c.pad_before, c.pad_after, attr);
      },
      activation(c.src, c.src_blocked), activation(c.dst, c.dst_blocked), c);
  p->conv = convolution_forward(p->pd);
  if (k.f.batch_norm) {
    primitive_attr scaled = caller_scratchpad();
    scaled.set_scales_mask(DNNL_ARG_SRC, c.wei.size() == 5 ? 0b11 : 0b1);  // per output channel
    p->scale_weights_pd = reorder::primitive_desc(cpu(), user_weights(c), cpu(), p->pd.weights_desc(), scaled);
    p->scale_weights = reorder(p->scale_weights_pd);
  }
  return p;
}

std::mutex fused_mutex;
std::unordered_map<std::string, FusedPrimitives *> fused_cache;

// x, w, [gamma, beta, mean, variance,] geometry, settings -> y. `settings` is float32
// [activation (0 none, 1 relu, 2 clip), alpha, beta, epsilon]; the geometry is the convolution's.
int fused_inference(int nparam, void **params, int64_t **shapes, const char **dtypes) {
  const bool batch_norm = nparam == 9;
  if ((nparam != 9 && nparam != 5) || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[nparam - 2]))
    return fail("ZooConvFusedInference: expects float32 x, w, [gamma, beta, mean, variance,] geometry, settings");
  ConvGeometry c = conv_geometry(shapes[0], shapes[1], static_cast<const int64_t *>(params[nparam - 3]));
  FusedKey key{&c, fused_settings(batch_norm, static_cast<const float *>(params[nparam - 2]))};
  FusedPrimitives *p = cached(fused_cache, fused_mutex,
                              c.key + join({batch_norm, key.f.activation, float_bits(key.f.alpha),
                                            float_bits(key.f.beta)}),
                              make_fused, &key);
  stream s(cpu());
  memory src = in_layout(s, p->pd.src_desc(), c.src, params[0], true, c.src_blocked);
  memory dst = in_layout(s, p->pd.dst_desc(), c.dst, params[nparam - 1], false, c.dst_blocked);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
  if (batch_norm) {
    const int64_t channels = c.dst[1];
    const float *gamma = static_cast<const float *>(params[2]), *beta = static_cast<const float *>(params[3]);
    const float *mean = static_cast<const float *>(params[4]), *variance = static_cast<const float *>(params[5]);
    memory scale(memory::desc({channels}, dt::f32, tag::a), cpu()), shift(memory::desc({channels}, dt::f32, tag::a), cpu());
    float *scale_data = static_cast<float *>(scale.get_data_handle());
    float *shift_data = static_cast<float *>(shift.get_data_handle());
    for (int64_t i = 0; i < channels; ++i) {
      scale_data[i] = gamma[i] / std::sqrt(variance[i] + key.f.epsilon);
      shift_data[i] = beta[i] - mean[i] * scale_data[i];
    }
    memory user(user_weights(c), cpu(), params[1]);
    memory wei(p->pd.weights_desc(), cpu());
    execute(s, p->scale_weights, p->scale_weights_pd, {{DNNL_ARG_SRC, user}, {DNNL_ARG_DST, wei},
                                 {DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC, scale}});
    args.insert({DNNL_ARG_WEIGHTS, wei});
    args.insert({DNNL_ARG_BIAS, shift});
  } else {
    args.insert({DNNL_ARG_WEIGHTS, in_layout(s, p->pd.weights_desc(), c.wei, params[1], true)});
  }
  execute(s, p->conv, p->pd, args);
  to_user(s, dst, c.dst, params[nparam - 1], c.dst_blocked);
  s.wait();
  return 0;
}

// ---------------------------------------------------------------- max pooling
struct PoolGeometry {
  memory::dims src, dst, kernel, strides, dilation, pad_before, pad_after;
  bool blocked;
  std::string key;
};

PoolGeometry pool_geometry(const int64_t *x, const int64_t *g) {
  PoolGeometry p;
  int64_t pt, pb, pl, pr;
  axis_padding(x[2], g[0], g[2], g[4] != 0, g[5], g[6], &pt, &pb);
  axis_padding(x[3], g[1], g[3], g[4] != 0, g[7], g[8], &pl, &pr);
  int64_t oh = (x[2] + pt + pb - g[0]) / g[2] + 1, ow = (x[3] + pl + pr - g[1]) / g[3] + 1;
  p.src = {x[0], x[1], x[2], x[3]};
  p.dst = {x[0], x[1], oh, ow};
  p.kernel = {g[0], g[1]};
  p.strides = {g[2], g[3]};
  p.dilation = {0, 0};
  p.pad_before = {pt, pl};
  p.pad_after = {pb, pr};
  p.blocked = g[9] != 0;
  p.key = join({x[0], x[1], x[2], x[3], g[0], g[1], g[2], g[3], pt, pb, pl, pr, g[9]});
  return p;
}

struct PoolPrimitives {
  pooling_forward::primitive_desc fwd_pd;
  pooling_forward fwd;
  pooling_forward::primitive_desc infer_pd;
  pooling_forward infer;
  pooling_backward::primitive_desc bwd_pd;
  pooling_backward bwd;
};

PoolPrimitives *make_pool(const std::string &, const void *arg) {
  const PoolGeometry &g = *static_cast<const PoolGeometry *>(arg);
  auto *p = new PoolPrimitives();
  // The tensors' own layouts: oneDNN's JIT pooling reads NCHW directly, so no reorders are needed.
  auto src = user_desc(g.src, g.blocked), dst = user_desc(g.dst, g.blocked);
  p->fwd_pd = pooling_forward::primitive_desc(cpu(), prop_kind::forward_training, algorithm::pooling_max, src, dst,
                                              g.strides, g.kernel, g.dilation, g.pad_before, g.pad_after,
                                              caller_scratchpad());
  p->fwd = pooling_forward(p->fwd_pd);
  p->infer_pd = pooling_forward::primitive_desc(cpu(), prop_kind::forward_inference, algorithm::pooling_max, src,
                                                dst, g.strides, g.kernel, g.dilation, g.pad_before, g.pad_after,
                                                caller_scratchpad());
  p->infer = pooling_forward(p->infer_pd);
  p->bwd_pd = pooling_backward::primitive_desc(cpu(), algorithm::pooling_max, src, dst, g.strides, g.kernel,
                                               g.dilation, g.pad_before, g.pad_after, p->fwd_pd, caller_scratchpad());
  p->bwd = pooling_backward(p->bwd_pd);
  return p;
}

std::mutex pool_mutex;
std::unordered_map<std::string, PoolPrimitives *> pool_cache;

PoolPrimitives *pool_primitives(const PoolGeometry &g) { return cached(pool_cache, pool_mutex, g.key, make_pool, &g); }

int64_t element_count(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

// ---------------------------------------------------------------- BatchNorm
// Per-channel statistics over N, H, W; only used on the blocked layout, where MindSpore's own
// BatchNorm (plain NCHW) cannot read the tensor. Moving statistics are updated by the cell.
struct BnGeometry {
  memory::dims src, channels;
  bool blocked;
  float epsilon;
  std::string key;
};

BnGeometry bn_geometry(const int64_t *x, const float *g) {
  BnGeometry b;
  b.src = {x[0], x[1], x[2], x[3]};
  b.channels = {x[1]};
  b.epsilon = g[0];
  b.blocked = g[1] != 0.0f;
  int32_t eps_bits;
  std::memcpy(&eps_bits, &b.epsilon, sizeof eps_bits);
  b.key = join({x[0], x[1], x[2], x[3], int64_t(b.blocked), eps_bits});
  return b;
}

struct BnPrimitives {
  batch_normalization_forward::primitive_desc fwd_pd;
  batch_normalization_forward fwd;
  batch_normalization_forward::primitive_desc infer_pd;
  batch_normalization_forward infer;
  batch_normalization_backward::primitive_desc bwd_pd;
  batch_normalization_backward bwd;
};

BnPrimitives *make_bn(const std::string &, const void *arg) {
  const BnGeometry &b = *static_cast<const BnGeometry *>(arg);
  auto md = user_desc(b.src, b.blocked);
  auto flags = normalization_flags::use_scale | normalization_flags::use_shift;
  auto *p = new BnPrimitives();
  p->fwd_pd = batch_normalization_forward::primitive_desc(cpu(), prop_kind::forward_training, md, md, b.epsilon, flags,
                                                          caller_scratchpad());
  p->fwd = batch_normalization_forward(p->fwd_pd);
  p->infer_pd = batch_normalization_forward::primitive_desc(cpu(), prop_kind::forward_inference, md, md, b.epsilon,
                                                            flags | normalization_flags::use_global_stats,
                                                            caller_scratchpad());
  p->infer = batch_normalization_forward(p->infer_pd);
  p->bwd_pd = batch_normalization_backward::primitive_desc(cpu(), prop_kind::backward, md, md, md, b.epsilon, flags,
                                                           p->fwd_pd, caller_scratchpad());
  p->bwd = batch_normalization_backward(p->bwd_pd);
  return p;
}

std::mutex bn_mutex;
std::unordered_map<std::string, BnPrimitives *> bn_cache;

BnPrimitives *bn_primitives(const BnGeometry &b) { return cached(bn_cache, bn_mutex, b.key, make_bn, &b); }

memory per_channel(const memory::dims &channels, void *data) {
  return memory(memory::desc(channels, dt::f32, tag::a), cpu(), data);
}

// ---------------------------------------------------------------- LeakyReLU
eltwise_forward::primitive_desc leaky_forward_pd(const memory::desc &md, float alpha) {
  return eltwise_forward::primitive_desc(cpu(), prop_kind::forward_training, algorithm::eltwise_relu, md, md, alpha,
                                         0.0f, caller_scratchpad());
}

// ---------------------------------------------------------------- the kernel thread
// Every entry point runs on one thread of this library, whichever MindSpore thread calls it.
// libgomp gives each thread that starts a parallel region its own pool of OpenMP workers, and as
// soon as the pools hold more threads than there are CPUs it stops spinning: a worker then sleeps
// after every parallel region and each region begins by waking it. MindSpore calls the kernels
// from an actor thread in training and in a graph's first run, and from the Python thread after
// that, so two pools on a 2-core machine were the usual case; after an idle pause a wake-up takes
// long enough that the second core joined each region late (batch-1 YOLOv3-Tiny 25 ms back to
// back, 41 ms after 0.1 s idle). One calling thread keeps one pool, whose worker spins between
// the regions of a network as OMP_WAIT_POLICY / GOMP_SPINCOUNT allow (src/cpu_env.py).
const char kKernelThreadName[] = "zoo_kernels";

class KernelThread {
 public:
  // Runs `job` on the kernel thread and returns its result; the caller waits.
  int run(const std::function<int()> &job) {
    if (std::this_thread::get_id() == id_) return job();  // already there
    std::lock_guard<std::mutex> one_caller(callers_);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &job;
    done_ = false;
    ready_.notify_one();
    finished_.wait(lock, [this] { return done_; });
    return result_;
  }

  // The one instance of this process (a forked child gets its own thread).
  static KernelThread &instance() {
    static std::mutex creating;
    static KernelThread *current = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(creating);
    if (current == nullptr || owner != getpid()) {
      current = new KernelThread();  // never deleted: the thread outlives static destruction
      owner = getpid();
    }
    return *current;
  }

 private:
  KernelThread() {
    std::thread worker([this] { loop(); });
    id_ = worker.get_id();
    worker.detach();
  }

  void loop() {
    pthread_setname_np(pthread_self(), kKernelThreadName);  // its OpenMP workers inherit the name
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      ready_.wait(lock, [this] { return job_ != nullptr; });
      const std::function<int()> *job = job_;
      job_ = nullptr;
      lock.unlock();
      int result;
      try {
        result = (*job)();
      } catch (...) {
        result = fail("unexpected exception in a zoo kernel");
      }
      lock.lock();
      result_ = result;
      done_ = true;
      finished_.notify_one();
    }
  }

  std::mutex callers_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable ready_, finished_;
  const std::function<int()> *job_ = nullptr;
  bool done_ = false;
  int result_ = 0;
  std::thread::id id_;
};

std::atomic<bool> use_kernel_thread{true};

// Runs an entry point's body on the kernel thread; a oneDNN error becomes a failure MindSpore
// reports, never an exception crossing the C interface.
template <typename Body>
int guarded(const char *name, Body body) {
  std::function<int()> job = [&]() -> int {
    try {
      return body();
    } catch (const std::exception &e) {
      return fail(std::string(name) + ": " + e.what());
    }
  };
  return use_kernel_thread ? KernelThread::instance().run(job) : job();
}

// params[2] (m x n) = op(params[0]) . op(params[1]), both float32; 0, or a failure named `name`.
int product(const char *name, int nparam, void **params, const char **dtypes, char trans_a, char trans_b,
            int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb) {
  return guarded(name, [&] {
    if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail(std::string(name) + ": bad arguments");
    if (dnnl_sgemm(trans_a, trans_b, m, n, k, 1.0f, static_cast<const float *>(params[0]), lda,
                   static_cast<const float *>(params[1]), ldb, 0.0f, static_cast<float *>(params[2]), n) != dnnl_success)
      return fail(std::string(name) + ": sgemm failed");
    return 0;
  });
}

}  // namespace

extern "C" {

// x, w, geometry -> y (training: the forward pass whose backward follows).
int ZooConv2D(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooConv2D", [&] {
    return conv_forward(nparam, params, shapes, dtypes, true);
  });
}

// x, w, geometry -> y (inference).
int ZooConv2DInference(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooConv2DInference", [&] {
    return conv_forward(nparam, params, shapes, dtypes, false);
  });
}

// x, w, [gamma, beta, mean, variance,] geometry, settings -> activation(BatchNorm(conv(x)))
// (inference with the moving statistics; see fused_inference).
int ZooConvFusedInference(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooConvFusedInference", [&] {
    return fused_inference(nparam, params, shapes, dtypes);
  });
}

// x (for its shape), w, dy, geometry -> dx.
int ZooConv2DBackpropInput(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooConv2DBackpropInput", [&] {
    return conv_backward(nparam, params, shapes, dtypes, true);
  });
}

// x, w (for its shape), dy, geometry -> dw.
int ZooConv2DBackpropFilter(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooConv2DBackpropFilter", [&] {
    return conv_backward(nparam, params, shapes, dtypes, false);
  });
}

// Pointwise convolutions (1x1, stride 1, no padding, one group) on NCHW are matrix products per
// image: y_n (K x HW) = w (K x C) . x_n (C x HW). oneDNN's sgemm runs them on the plain layout,
// with none of the reorders to and from the blocked layout the convolution primitive needs.
// x, w -> y.
int ZooPointwiseConv(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooPointwiseConv", [&] {
    if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooPointwiseConv: bad arguments");
    const int64_t n = shapes[0][0], c = shapes[0][1], hw = shapes[0][2] * shapes[0][3], k = shapes[1][0];
    const float *x = static_cast<const float *>(params[0]), *w = static_cast<const float *>(params[1]);
    float *y = static_cast<float *>(params[2]);
    for (int64_t i = 0; i < n; ++i)
      if (dnnl_sgemm('N', 'N', k, hw, c, 1.0f, w, c, x + i * c * hw, hw, 0.0f, y + i * k * hw, hw) != dnnl_success)
        return fail("ZooPointwiseConv: sgemm failed");
    return 0;
  });
}

// w, dy -> dx: dx_n (C x HW) = w^T (C x K) . dy_n (K x HW).
int ZooPointwiseConvBackpropInput(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                  void *) {
  return guarded("ZooPointwiseConvBackpropInput", [&] {
    if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooPointwiseConvBackpropInput: bad arguments");
    const int64_t k = shapes[0][0], c = shapes[0][1], n = shapes[1][0], hw = shapes[1][2] * shapes[1][3];
    const float *w = static_cast<const float *>(params[0]), *dy = static_cast<const float *>(params[1]);
    float *dx = static_cast<float *>(params[2]);
    for (int64_t i = 0; i < n; ++i)
      if (dnnl_sgemm('T', 'N', c, hw, k, 1.0f, w, c, dy + i * k * hw, hw, 0.0f, dx + i * c * hw, hw) != dnnl_success)
        return fail("ZooPointwiseConvBackpropInput: sgemm failed");
    return 0;
  });
}

// x, dy -> dw (K x C x 1 x 1) = sum over images of dy_n (K x HW) . x_n^T (HW x C), in image order.
int ZooPointwiseConvBackpropFilter(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *,
                                   void *) {
  return guarded("ZooPointwiseConvBackpropFilter", [&] {
    if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooPointwiseConvBackpropFilter: bad arguments");
    const int64_t n = shapes[0][0], c = shapes[0][1], hw = shapes[0][2] * shapes[0][3], k = shapes[1][1];
    const float *x = static_cast<const float *>(params[0]), *dy = static_cast<const float *>(params[1]);
    float *dw = static_cast<float *>(params[2]);
    for (int64_t i = 0; i < n; ++i)
      if (dnnl_sgemm('N', 'T', k, c, hw, 1.0f, dy + i * k * hw, hw, x + i * c * hw, hw, i ? 1.0f : 0.0f, dw, c) !=
          dnnl_success)
        return fail("ZooPointwiseConvBackpropFilter: sgemm failed");
    return 0;
  });
}

// Dense layers (nn.Dense: y = x . w^T, w of shape out x in) as row-major sgemm on the full ISA;
// MindSpore's MatMul runs on its AVX2-capped oneDNN, at about half the memory bandwidth that a
// batch-1 product with VGG16's 25088 x 4096 weights needs.
// x (N x K), w (M x K) -> y (N x M) = x . w^T.
int ZooMatMul(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  const int64_t n = shapes[0][0], k = shapes[0][1], m = shapes[1][0];
  return product("ZooMatMul", nparam, params, dtypes, 'N', 'T', n, m, k, k, k);
}

// dy (N x M), w (M x K) -> dx (N x K) = dy . w.
int ZooMatMulGradInput(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  const int64_t n = shapes[0][0], m = shapes[0][1], k = shapes[1][1];
  return product("ZooMatMulGradInput", nparam, params, dtypes, 'N', 'N', n, k, m, m, k);
}

// dy (N x M), x (N x K) -> dw (M x K) = dy^T . x.
int ZooMatMulGradWeight(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  const int64_t m = shapes[0][1], n = shapes[0][0], k = shapes[1][1];
  return product("ZooMatMulGradWeight", nparam, params, dtypes, 'T', 'N', m, k, n, m, k);
}

// x, geometry -> y, workspace (uint8; where each window's maximum was, for the backward pass).
int ZooMaxPool(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooMaxPool", [&] {
    if (nparam != 4 || !is_f32(dtypes[0])) return fail("ZooMaxPool: expects float32 x, geometry -> y, workspace");
    PoolGeometry g = pool_geometry(shapes[0], static_cast<const int64_t *>(params[1]));
    PoolPrimitives *p = pool_primitives(g);
    size_t have = static_cast<size_t>(element_count(ndims[3], shapes[3]));
    if (p->fwd_pd.workspace_desc().get_size() > have) return fail("ZooMaxPool: workspace too small");
    stream s(cpu());
    memory src(p->fwd_pd.src_desc(), cpu(), params[0]), dst(p->fwd_pd.dst_desc(), cpu(), params[2]);
    memory ws(p->fwd_pd.workspace_desc(), cpu(), params[3]);
    execute(s, p->fwd, p->fwd_pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_WORKSPACE, ws}});
    s.wait();
    return 0;
  });
}

// x, geometry -> y (inference: no workspace).
int ZooMaxPoolInference(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooMaxPoolInference", [&] {
    if (nparam != 3 || !is_f32(dtypes[0])) return fail("ZooMaxPoolInference: expects float32 x, geometry -> y");
    PoolGeometry g = pool_geometry(shapes[0], static_cast<const int64_t *>(params[1]));
    PoolPrimitives *p = pool_primitives(g);
    stream s(cpu());
    memory src(p->infer_pd.src_desc(), cpu(), params[0]), dst(p->infer_pd.dst_desc(), cpu(), params[2]);
    execute(s, p->infer, p->infer_pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    s.wait();
    return 0;
  });
}

// x (for its shape), dy, workspace, geometry -> dx.
int ZooMaxPoolGrad(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooMaxPoolGrad", [&] {
    if (nparam != 5 || !is_f32(dtypes[1])) return fail("ZooMaxPoolGrad: bad arguments");
    PoolGeometry g = pool_geometry(shapes[0], static_cast<const int64_t *>(params[3]));
    PoolPrimitives *p = pool_primitives(g);
    stream s(cpu());
    memory dy(p->bwd_pd.diff_dst_desc(), cpu(), params[1]), dx(p->bwd_pd.diff_src_desc(), cpu(), params[4]);
    memory ws(p->fwd_pd.workspace_desc(), cpu(), params[2]);
    execute(s, p->bwd, p->bwd_pd, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_SRC, dx}, {DNNL_ARG_WORKSPACE, ws}});
    s.wait();
    return 0;
  });
}

// x, alpha -> y = x > 0 ? x : alpha * x.
int ZooLeakyReLU(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooLeakyReLU", [&] {
    if (nparam != 3 || !is_f32(dtypes[0])) return fail("ZooLeakyReLU: expects float32 x, alpha -> y");
    float alpha = *static_cast<const float *>(params[1]);
    memory::desc md({element_count(ndims[0], shapes[0])}, dt::f32, tag::a);
    auto pd = leaky_forward_pd(md, alpha);
    stream s(cpu());
    memory src(md, cpu(), params[0]), dst(md, cpu(), params[2]);
    execute(s, eltwise_forward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    s.wait();
    return 0;
  });
}

// x, dy, alpha -> dx = x > 0 ? dy : alpha * dy.
int ZooLeakyReLUGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooLeakyReLUGrad", [&] {
    if (nparam != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooLeakyReLUGrad: bad arguments");
    float alpha = *static_cast<const float *>(params[2]);
    memory::desc md({element_count(ndims[0], shapes[0])}, dt::f32, tag::a);
    auto fwd_pd = leaky_forward_pd(md, alpha);
    auto pd = eltwise_backward::primitive_desc(cpu(), algorithm::eltwise_relu, md, md, md, alpha, 0.0f, fwd_pd,
                                               caller_scratchpad());
    stream s(cpu());
    memory src(md, cpu(), params[0]), dy(md, cpu(), params[1]), dx(md, cpu(), params[3]);
    execute(s, eltwise_backward(pd), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_SRC, dx}});
    s.wait();
    return 0;
  });
}

// x, gamma, beta, geometry -> y, batch mean, batch variance (biased: divided by N*H*W).
int ZooBatchNorm(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooBatchNorm", [&] {
    if (nparam != 7 || !is_f32(dtypes[0])) return fail("ZooBatchNorm: expects float32 x, gamma, beta, geometry");
    BnGeometry b = bn_geometry(shapes[0], static_cast<const float *>(params[3]));
    BnPrimitives *p = bn_primitives(b);
    stream s(cpu());
    memory x(p->fwd_pd.src_desc(), cpu(), params[0]), y(p->fwd_pd.dst_desc(), cpu(), params[4]);
    execute(s, p->fwd, p->fwd_pd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}, {DNNL_ARG_SCALE, per_channel(b.channels, params[1])},
                       {DNNL_ARG_SHIFT, per_channel(b.channels, params[2])}, {DNNL_ARG_MEAN, per_channel(b.channels, params[5])},
                       {DNNL_ARG_VARIANCE, per_channel(b.channels, params[6])}});
    s.wait();
    return 0;
  });
}

// x, gamma, beta, mean, variance, geometry -> y (inference, with the given statistics).
int ZooBatchNormInference(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooBatchNormInference", [&] {
    if (nparam != 7 || !is_f32(dtypes[0])) return fail("ZooBatchNormInference: bad arguments");
    BnGeometry b = bn_geometry(shapes[0], static_cast<const float *>(params[5]));
    BnPrimitives *p = bn_primitives(b);
    stream s(cpu());
    memory x(p->infer_pd.src_desc(), cpu(), params[0]), y(p->infer_pd.dst_desc(), cpu(), params[6]);
    execute(s, p->infer, p->infer_pd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, y}, {DNNL_ARG_SCALE, per_channel(b.channels, params[1])},
                         {DNNL_ARG_SHIFT, per_channel(b.channels, params[2])},
                         {DNNL_ARG_MEAN, per_channel(b.channels, params[3])},
                         {DNNL_ARG_VARIANCE, per_channel(b.channels, params[4])}});
    s.wait();
    return 0;
  });
}

// x, dy, gamma, batch mean, batch variance, geometry -> dx, dgamma, dbeta.
int ZooBatchNormGrad(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooBatchNormGrad", [&] {
    if (nparam != 9 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooBatchNormGrad: bad arguments");
    BnGeometry b = bn_geometry(shapes[0], static_cast<const float *>(params[5]));
    BnPrimitives *p = bn_primitives(b);
    stream s(cpu());
    memory x(p->bwd_pd.src_desc(), cpu(), params[0]), dy(p->bwd_pd.diff_dst_desc(), cpu(), params[1]);
    memory dx(p->bwd_pd.diff_src_desc(), cpu(), params[6]);
    execute(s, p->bwd, p->bwd_pd, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_SCALE, per_channel(b.channels, params[2])},
                       {DNNL_ARG_MEAN, per_channel(b.channels, params[3])},
                       {DNNL_ARG_VARIANCE, per_channel(b.channels, params[4])}, {DNNL_ARG_DIFF_SRC, dx},
                       {DNNL_ARG_DIFF_SCALE, per_channel(b.channels, params[7])},
                       {DNNL_ARG_DIFF_SHIFT, per_channel(b.channels, params[8])}});
    s.wait();
    return 0;
  });
}

// boxes (N, P, 4), ground truth (N, M, 4), both centre/size -> (N, P): the best IoU of each box
// with any of its image's ground-truth boxes (0 with none). The arithmetic, operation by
// operation, is that of the MindSpore version in src/yolov3_tiny/loss.py (built without
// fused multiply-add), so the results are bit-equal.
int ZooBestIoU(int nparam, void **params, int *, int64_t **shapes, const char **dtypes, void *, void *) {
  return guarded("ZooBestIoU", [&] {
    if (nparam != 3 || !is_f32(dtypes[0]) || !is_f32(dtypes[1])) return fail("ZooBestIoU: bad arguments");
    const float *boxes = static_cast<const float *>(params[0]), *truth = static_cast<const float *>(params[1]);
    float *best = static_cast<float *>(params[2]);
    const int64_t images = shapes[0][0], count = shapes[0][1], slots = shapes[1][1];
    const float epsilon = 1e-6f;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < images * count; ++i) {
      const float *b = boxes + 4 * i;
      const float *g = truth + 4 * slots * (i / count);
      const float bw_half = b[2] / 2.0f, bh_half = b[3] / 2.0f;
      const float bx1 = b[0] - bw_half, bx2 = b[0] + bw_half, by1 = b[1] - bh_half, by2 = b[1] + bh_half;
      const float b_area = b[2] * b[3];
      float result = 0.0f;
      for (int64_t j = 0; j < slots; ++j, g += 4) {
        const float gw_half = g[2] / 2.0f, gh_half = g[3] / 2.0f;
        const float w = std::max(std::min(bx2, g[0] + gw_half) - std::max(bx1, g[0] - gw_half), 0.0f);
        const float h = std::max(std::min(by2, g[1] + gh_half) - std::max(by1, g[1] - gh_half), 0.0f);
        const float intersection = w * h;
        const float union_area = b_area + g[2] * g[3] - intersection;
        const float iou = intersection / (union_area + epsilon);
        if (j == 0 || iou > result) result = iou;
      }
      best[i] = result;
    }
    return 0;
  });
}

// Threads of this oneDNN copy (OpenMP, on the kernel thread); returns the count in effect.
int ZooSetThreads(int threads) {
  return guarded("ZooSetThreads", [&] {
    if (threads > 0) omp_set_num_threads(threads);
    return omp_get_max_threads();
  });
}

// The thread id (gettid) that an entry point called now runs on.
int ZooWhereKernelsRun() {
  return guarded("ZooWhereKernelsRun", [] { return static_cast<int>(syscall(SYS_gettid)); });
}

// 1: entry points run on the kernel thread (the default); 0: on the calling thread. Returns the
// previous setting. For measuring what the kernel thread is worth and for tests.
int ZooUseKernelThread(int use) { return use_kernel_thread.exchange(use != 0) ? 1 : 0; }

// Channels per block of the activation layout the convolutions use here (0: not blocked).
int ZooActivationBlock() {
  try {
    tag t = activation_tag();
    return t == tag::nChw16c ? 16 : t == tag::nChw8c ? 8 : 0;
  } catch (const std::exception &e) {
    fail(std::string("ZooActivationBlock: ") + e.what());
    return 0;
  }
}

// Lift the ISA cap the environment set for MindSpore's oneDNN (0 = ok); must precede any primitive.
int ZooUseFullIsa() { return static_cast<int>(dnnl_set_max_cpu_isa(dnnl_cpu_isa_default)); }

// oneDNN version of this copy, major * 10000 + minor * 100 + patch.
int ZooOnednnVersion() {
  const dnnl_version_t *v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}

// Which oneDNN implementation each cached primitive uses (for the benchmark's report).
const char *ZooImplementations() {
  static std::string text;
  std::lock_guard<std::mutex> lock(conv_mutex);
  text.clear();
  for (auto &kv : conv_cache)
    text += "conv " + kv.first + " " + kv.second->fwd_pd.impl_info_str() + " / " +
            kv.second->infer_pd.impl_info_str() + " / " + kv.second->bwd_data_pd.impl_info_str() + " / " +
            kv.second->bwd_weights_pd.impl_info_str() + "\n";
  {
    std::lock_guard<std::mutex> fused_lock(fused_mutex);
    for (auto &kv : fused_cache) text += "fused conv " + kv.first + " " + kv.second->pd.impl_info_str() + "\n";
  }
  for (auto &kv : pool_cache) text += "maxpool " + kv.first + " " + kv.second->fwd_pd.impl_info_str() + "\n";
  for (auto &kv : bn_cache)
    text += "batchnorm " + kv.first + " " + kv.second->fwd_pd.impl_info_str() + " / " +
            kv.second->bwd_pd.impl_info_str() + "\n";
  return text.c_str();
}

const char *ZooLastError() {
  std::lock_guard<std::mutex> lock(error_mutex);
  return last_error.c_str();
}

}  // extern "C"
