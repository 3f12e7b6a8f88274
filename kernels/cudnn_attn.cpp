// cudnn_attn — cuDNN's fused attention through its header-only C++ frontend, behind the C functions of
// kernels/cudnn_attn.h (the contract, the layouts and the masks are described there). One translation unit, compiled
// only when CMake found cudnn.h (9 or newer) and cudnn_frontend.h (ORPO_CUDNN; the frontend comes from the PyPI
// wheel nvidia-cudnn-frontend, headers only).
//
// libcudnn is loaded at run time (dlopen of libcudnn.so.9, the frontend's dynamic loading): a binary built with cuDNN
// attention still starts where the library is missing, and then says so (cudnn_sdpa_prepare fails, the caller runs
// kernels/attn.cu's version). One cuDNN handle per GPU of the process; graphs are cached by (GPU, direction, sq, skv,
// nq, nkv, hd, causal): building one is the slow part (tens to hundreds of ms), so the callers pad lengths to a few
// buckets (backend/attn_fused.h). A shape cuDNN refuses is remembered as refused, with its reason. Nothing here
// throws across the C boundary: the frontend's exceptions become a refusal or the context's sticky error.
#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING 1
#include <cudnn_frontend.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include <cuda_runtime.h>

#include "cudnn_attn.h"

extern "C" {
#include "io/err.h"
}

namespace cudnn_frontend {
void *cudnn_dlhandle = nullptr; // the frontend's handle of the loaded libcudnn (its dynamic loading)
}

namespace fe = cudnn_frontend;

namespace {

enum : int64_t { U_Q = 1, U_K, U_V, U_O, U_STATS, U_LQ, U_LKV, U_DO, U_DQ, U_DK, U_DV };

struct entry {
    std::shared_ptr<fe::graph::Graph> g;
    int64_t ws = 0;
    std::string why; // empty: usable
};

using key = std::tuple<int, int, int, int, int, int, int, int>; // device, bwd, sq, skv, nq, nkv, hd, causal

std::mutex mu;
std::map<key, entry> graphs;
std::map<int, cudnnHandle_t> handles;
std::string load_error; // why libcudnn could not be loaded (empty: loaded or not tried)
bool load_tried = false;

// libcudnn.so.9 loaded once; the frontend's symbols come from it
bool load_cudnn(std::string &why) {
    if (!load_tried) {
        load_tried = true;
        void *h = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
        if (!h) h = dlopen("libcudnn.so", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            load_error = std::string("cannot load libcudnn.so.9 (") + (e ? e : "unknown error") + ")";
        } else {
            fe::cudnn_dlhandle = h;
            try {
                size_t v = fe::detail::get_backend_version();
                if (v < 90000) load_error = "cuDNN " + std::to_string(v) + " was loaded; 9.0 or newer needed";
            } catch (const std::exception &ex) {
                load_error = std::string("cuDNN: ") + ex.what();
            }
        }
    }
    why = load_error;
    return load_error.empty();
}

std::shared_ptr<fe::graph::Tensor_attributes> tensor(fe::graph::Graph &g, const char *name, int64_t uid, int64_t h,
                                                     int64_t s, int64_t d) {
    // token-major [1, h, s, d]: row r of the sequence holds h * d values, head after head
    return g.tensor(fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim({1, h, s, d}).set_stride(
        {s * h * d, d, h * d, 1}));
}

void out_like(const std::shared_ptr<fe::graph::Tensor_attributes> &t, int64_t uid, int64_t h, int64_t s, int64_t d) {
    t->set_output(true).set_uid(uid).set_dim({1, h, s, d}).set_stride({s * h * d, d, h * d, 1});
}

std::shared_ptr<fe::graph::Tensor_attributes> len_tensor(fe::graph::Graph &g, const char *name, int64_t uid) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({1, 1, 1, 1})
                        .set_stride({1, 1, 1, 1})
                        .set_data_type(fe::DataType_t::INT32));
}

std::string build(entry &e, cudnnHandle_t h, const cudnn_sdpa_shape &s, int bwd) {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    const float scale = 1.0f / std::sqrt((float)s.hd);
    auto Q = tensor(*g, "Q", U_Q, s.nq, s.sq, s.hd);
    auto K = tensor(*g, "K", U_K, s.nkv, s.skv, s.hd);
    auto V = tensor(*g, "V", U_V, s.nkv, s.skv, s.hd);
    auto LQ = len_tensor(*g, "seq_len_q", U_LQ);
    auto LKV = len_tensor(*g, "seq_len_kv", U_LKV);
    if (!bwd) {
        auto opt = fe::graph::SDPA_attributes()
                       .set_name("orpo_sdpa_fwd")
                       .set_generate_stats(true)
                       .set_attn_scale(scale)
                       .set_padding_mask(true)
                       .set_seq_len_q(LQ)
                       .set_seq_len_kv(LKV);
        if (s.causal) opt.set_causal_mask_bottom_right(true);
        auto [O, Stats] = g->sdpa(Q, K, V, opt);
        out_like(O, U_O, s.nq, s.sq, s.hd);
        Stats->set_output(true)
            .set_uid(U_STATS)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({1, s.nq, s.sq, 1})
            .set_stride({(int64_t)s.nq * s.sq, s.sq, 1, 1});
    } else {
        auto O = tensor(*g, "O", U_O, s.nq, s.sq, s.hd);
        auto dO = tensor(*g, "dO", U_DO, s.nq, s.sq, s.hd);
        auto Stats = g->tensor(fe::graph::Tensor_attributes()
                                   .set_name("Stats")
                                   .set_uid(U_STATS)
                                   .set_dim({1, s.nq, s.sq, 1})
                                   .set_stride({(int64_t)s.nq * s.sq, s.sq, 1, 1})
                                   .set_data_type(fe::DataType_t::FLOAT));
        auto opt = fe::graph::SDPA_backward_attributes()
                       .set_name("orpo_sdpa_bwd")
                       .set_attn_scale(scale)
                       .set_padding_mask(true)
                       .set_seq_len_q(LQ)
                       .set_seq_len_kv(LKV)
                       .set_deterministic_algorithm(true); // reproducible runs, bit-identical resume
        if (s.causal) opt.set_causal_mask_bottom_right(true);
        auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, Stats, opt);
        out_like(dQ, U_DQ, s.nq, s.sq, s.hd);
        out_like(dK, U_DK, s.nkv, s.skv, s.hd);
        out_like(dV, U_DV, s.nkv, s.skv, s.hd);
    }
    fe::error_t st = g->validate();
    if (st.is_good()) st = g->build_operation_graph(h);
    if (st.is_good()) st = g->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (st.is_good()) st = g->check_support();
    if (st.is_good()) st = g->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE);
    if (st.is_good()) st = g->get_workspace_size(e.ws);
    if (!st.is_good()) return st.get_message().empty() ? std::string("cuDNN refused the graph") : st.get_message();
    e.g = g;
    return std::string();
}

void put(char *why, size_t n, const std::string &s) {
    if (n) std::snprintf(why, n, "%s", s.c_str());
}

// the prepared graph of this shape on the current GPU, and the handle bound to c's stream; nullptr when none
const entry *ready(opctx *c, const cudnn_sdpa_shape *s, int bwd, cudnnHandle_t *h) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return nullptr;
    std::lock_guard<std::mutex> lk(mu);
    auto it = graphs.find(key{dev, bwd, s->sq, s->skv, s->nq, s->nkv, s->hd, s->causal});
    auto hi = handles.find(dev);
    if (it == graphs.end() || !it->second.why.empty() || hi == handles.end()) return nullptr;
    try {
        if (fe::detail::set_stream(hi->second, (cudaStream_t)c->stream) != CUDNN_STATUS_SUCCESS) return nullptr;
    } catch (const std::exception &) {
        return nullptr;
    }
    *h = hi->second;
    return &it->second;
}

int run(opctx *c, const entry *e, cudnnHandle_t h, std::unordered_map<int64_t, void *> &pack, void *ws,
        const char *what) {
    try {
        fe::error_t st = e->g->execute(h, pack, e->ws > 0 ? ws : nullptr);
        if (st.is_good()) return 0;
        return opctx_fail(c, ERR_INTERNAL, "cuDNN attention %s: %s", what, st.get_message().c_str());
    } catch (const std::exception &ex) {
        return opctx_fail(c, ERR_INTERNAL, "cuDNN attention %s: %s", what, ex.what());
    }
}

} // namespace

extern "C" int cudnn_sdpa_prepare(opctx *c, const cudnn_sdpa_shape *s, int bwd, size_t *ws, char *why,
                                  size_t why_len) {
    (void)c;
    *ws = 0;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        put(why, why_len, "cannot query the current GPU");
        return 1;
    }
    if (major < 8) {
        put(why, why_len, "cuDNN's fused attention needs sm_80 or newer");
        return 1;
    }
    std::lock_guard<std::mutex> lk(mu);
    std::string err;
    if (!load_cudnn(err)) {
        put(why, why_len, err);
        return 1;
    }
    const key k{dev, bwd, s->sq, s->skv, s->nq, s->nkv, s->hd, s->causal};
    auto it = graphs.find(k);
    if (it == graphs.end()) {
        try {
            if (!handles.count(dev)) {
                cudnnHandle_t h = nullptr;
                if (fe::detail::create_handle(&h) != CUDNN_STATUS_SUCCESS) {
                    put(why, why_len, "cudnnCreate failed");
                    return 1;
                }
                handles[dev] = h;
            }
            entry e;
            e.why = build(e, handles[dev], *s, bwd);
            it = graphs.emplace(k, std::move(e)).first;
        } catch (const std::exception &ex) {
            entry e;
            e.why = std::string("cuDNN: ") + ex.what();
            it = graphs.emplace(k, std::move(e)).first;
        }
    }
    if (!it->second.why.empty()) {
        put(why, why_len, it->second.why);
        return 1;
    }
    *ws = (size_t)it->second.ws;
    return 0;
}

extern "C" int cudnn_sdpa_fwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                              const void *v, void *o, float *stats, void *ws) {
    cudnnHandle_t h = nullptr;
    const entry *e = ready(c, s, 0, &h);
    if (!e) return opctx_fail(c, ERR_INTERNAL, "cuDNN attention forward: the shape was not prepared");
    std::unordered_map<int64_t, void *> pack = {{U_Q, (void *)q},
                                                {U_K, (void *)k},
                                                {U_V, (void *)v},
                                                {U_O, o},
                                                {U_STATS, stats},
                                                {U_LQ, (void *)lens},
                                                {U_LKV, (void *)(lens + CUDNN_SDPA_LKV)}};
    return run(c, e, h, pack, ws, "forward");
}

extern "C" int cudnn_sdpa_bwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                              const void *v, const void *o, const void *dout, const float *stats, void *dq, void *dk,
                              void *dv, void *ws) {
    cudnnHandle_t h = nullptr;
    const entry *e = ready(c, s, 1, &h);
    if (!e) return opctx_fail(c, ERR_INTERNAL, "cuDNN attention backward: the shape was not prepared");
    std::unordered_map<int64_t, void *> pack = {{U_Q, (void *)q},     {U_K, (void *)k},      {U_V, (void *)v},
                                                {U_O, (void *)o},     {U_DO, (void *)dout},  {U_STATS, (void *)stats},
                                                {U_DQ, dq},           {U_DK, dk},            {U_DV, dv},
                                                {U_LQ, (void *)lens}, {U_LKV, (void *)(lens + CUDNN_SDPA_LKV)}};
    return run(c, e, h, pack, ws, "backward");
}

extern "C" int cudnn_sdpa_version(void) {
    std::lock_guard<std::mutex> lk(mu);
    std::string err;
    if (!load_cudnn(err)) return 0;
    try {
        return (int)fe::detail::get_backend_version();
    } catch (const std::exception &) {
        return 0;
    }
}
