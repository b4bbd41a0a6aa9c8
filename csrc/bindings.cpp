// pybind11 module fastot._C: NumPy arrays in, NumPy arrays out, GIL released
// around every kernel. No libtorch: tensors arrive as NumPy views.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lsa.h"
#include "softmin.h"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;  // no forcecast: dtype must match exactly

// cost (B, n, m) with n <= m, C-contiguous -> (col4row (B, n) int64, u (B, n), v (B, m), status (B,) int32)
template <typename T>
py::tuple lsa_batch(const CArray<T>& cost, int num_threads, const std::string& isa) {
  if (cost.ndim() != 3) throw std::invalid_argument("cost must have shape (B, n, m)");
  const int64_t B = cost.shape(0), n = cost.shape(1), m = cost.shape(2);
  if (n > m) throw std::invalid_argument("cost must have n <= m (transpose it first)");
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  CArray<int64_t> col4row({B, n});
  CArray<T> u({B, n});
  CArray<T> v({B, m});
  CArray<int32_t> status({B});
  const T* c = cost.data();
  int64_t* x = col4row.mutable_data();
  T* pu = u.mutable_data();
  T* pv = v.mutable_data();
  int32_t* ps = status.mutable_data();
  {
    py::gil_scoped_release release;
    fastot::lsa_solve_batch<T>(c, B, n, m, x, pu, pv, ps, num_threads, isa);
  }
  return py::make_tuple(col4row, u, v, status);
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t k = 0; k < a.ndim(); ++k) s += (k ? ", " : "") + std::to_string(a.shape(k));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
void check_scale(const CArray<T>& scale, int64_t B) {
  if (scale.ndim() != 1 || scale.shape(0) != B)
    throw std::invalid_argument("scale must have shape (B,) = (" + std::to_string(B) + ",), got " +
                                shape_str(scale));
  const T* s = scale.data();
  for (int64_t b = 0; b < B; ++b)
    if (!(s[b] > 0 && s[b] < std::numeric_limits<T>::infinity()))
      throw std::invalid_argument("scale must be positive and finite (scale = 1/epsilon), got scale[" +
                                  std::to_string(b) + "] = " + std::to_string(s[b]));
}

// C (B, n, m), h (B, m) [transpose: (B, n)], scale (B,) -> out (B, n) [transpose: (B, m)]
template <typename T>
CArray<T> lse_dense(const CArray<T>& C, const CArray<T>& h, const CArray<T>& scale, bool transpose,
                    int num_threads, const std::string& isa) {
  if (C.ndim() != 3) throw std::invalid_argument("C must have shape (B, n, m), got " + shape_str(C));
  const int64_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  const int64_t hn = transpose ? n : m;
  if (h.ndim() != 2 || h.shape(0) != B || h.shape(1) != hn)
    throw std::invalid_argument(std::string("h must have shape ") + (transpose ? "(B, n)" : "(B, m)") + " = (" +
                                std::to_string(B) + ", " + std::to_string(hn) + ") for C of shape " +
                                shape_str(C) + " and transpose=" + (transpose ? "True" : "False") + ", got " +
                                shape_str(h));
  check_scale(scale, B);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);  // a bad isa raises before any work
  CArray<T> out({B, transpose ? m : n});
  const T *pc = C.data(), *ph = h.data(), *ps = scale.data();
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    fastot::lse_dense<T>(pc, ph, ps, B, n, m, transpose, po, num_threads, isa);
  }
  return out;
}

// (B, n, m, d) of point clouds x (B, n, d), y (B, m, d), checked.
std::array<int64_t, 4> point_shapes(const py::array& x, const py::array& y) {
  if (x.ndim() != 3) throw std::invalid_argument("x must have shape (B, n, d), got " + shape_str(x));
  const int64_t B = x.shape(0), n = x.shape(1), d = x.shape(2);
  if (y.ndim() != 3 || y.shape(0) != B || y.shape(2) != d)
    throw std::invalid_argument("y must have shape (B, m, d) with B = " + std::to_string(B) +
                                ", d = " + std::to_string(d) + " (from x of shape " + shape_str(x) + "), got " +
                                shape_str(y));
  return {B, n, y.shape(1), d};
}

// x (B, n, d), y (B, m, d), h (B, m), scale (B,) -> out (B, n)
template <typename T>
CArray<T> lse_sqeuclidean(const CArray<T>& x, const CArray<T>& y, const CArray<T>& h, const CArray<T>& scale,
                          int num_threads, const std::string& isa) {
  const std::array<int64_t, 4> shp = point_shapes(x, y);
  const int64_t B = shp[0], n = shp[1], m = shp[2], d = shp[3];
  if (h.ndim() != 2 || h.shape(0) != B || h.shape(1) != m)
    throw std::invalid_argument("h must have shape (B, m) = (" + std::to_string(B) + ", " + std::to_string(m) +
                                "), got " + shape_str(h));
  check_scale(scale, B);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);
  CArray<T> out({B, n});
  const T *px = x.data(), *py = y.data(), *ph = h.data(), *ps = scale.data();
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    fastot::lse_sqeuclidean<T>(px, py, ph, ps, B, n, m, d, po, num_threads, isa);
  }
  return out;
}

void check_shape(const char* name, const py::array& a, std::vector<int64_t> want) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t k = 0; ok && k < want.size(); ++k) ok = a.shape(k) == want[k];
  if (!ok) {
    std::string w = "(";
    for (size_t k = 0; k < want.size(); ++k) w += (k ? ", " : "") + std::to_string(want[k]);
    throw std::invalid_argument(std::string(name) + " must have shape " + w + (want.size() == 1 ? ",)" : ")") +
                                ", got " + shape_str(a));
  }
}

// The fused Sinkhorn step's vector arguments, checked: hg (B, m), sf (B,), log_a (B, n), coef (B,),
// sg (B,), cap (B, n) or None, active (B,) uint8 or None.
template <typename T>
struct StepInputs {
  CArray<T> hg, sf, log_a, coef, sg;
  std::optional<CArray<T>> cap;
  std::optional<CArray<uint8_t>> active;
  fastot::StepArgs<T> args(int64_t B, int64_t n, int64_t m) const {
    check_shape("hg", hg, {B, m});
    check_scale(sf, B);
    check_shape("log_a", log_a, {B, n});
    check_shape("coef", coef, {B});
    check_scale(sg, B);
    if (cap) check_shape("cap", *cap, {B, n});
    if (active) check_shape("active", *active, {B});
    return {hg.data(), sf.data(), log_a.data(), coef.data(), cap ? cap->data() : nullptr, sg.data(),
            active ? active->data() : nullptr};
  }
};

// Outputs S (B, n), T (B, m); rows of inactive problems are NaN.
template <typename T>
py::tuple step_outputs(int64_t B, int64_t n, int64_t m, const fastot::StepArgs<T>& a,
                       const std::function<void(T*, T*)>& run) {
  CArray<T> S({B, n}), Tc({B, m});
  T *ps = S.mutable_data(), *pt = Tc.mutable_data();
  for (int64_t b = 0; b < B; ++b)
    if (a.active && !a.active[b]) {
      std::fill(ps + b * n, ps + (b + 1) * n, std::numeric_limits<T>::quiet_NaN());
      std::fill(pt + b * m, pt + (b + 1) * m, std::numeric_limits<T>::quiet_NaN());
    }
  {
    py::gil_scoped_release release;
    run(ps, pt);
  }
  return py::make_tuple(S, Tc);
}

template <typename T>
py::tuple sinkhorn_step_dense(const CArray<T>& C, const StepInputs<T>& in, int num_threads, const std::string& isa) {
  if (C.ndim() != 3) throw std::invalid_argument("C must have shape (B, n, m), got " + shape_str(C));
  const int64_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  const fastot::StepArgs<T> a = in.args(B, n, m);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);
  const T* pc = C.data();
  return step_outputs<T>(B, n, m, a, [&](T* S, T* Tc) {
    fastot::sinkhorn_step_dense<T>(pc, a, B, n, m, S, Tc, num_threads, isa);
  });
}

template <typename T>
py::tuple sinkhorn_step_sqeuclidean(const CArray<T>& x, const CArray<T>& y, const StepInputs<T>& in,
                                    int num_threads, const std::string& isa) {
  const std::array<int64_t, 4> shp = point_shapes(x, y);
  const int64_t B = shp[0], n = shp[1], m = shp[2], d = shp[3];
  const fastot::StepArgs<T> a = in.args(B, n, m);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);
  const T *px = x.data(), *py_ = y.data();
  return step_outputs<T>(B, n, m, a, [&](T* S, T* Tc) {
    fastot::sinkhorn_step_sqeuclidean<T>(px, py_, a, B, n, m, d, S, Tc, num_threads, isa);
  });
}

template <typename T>
CArray<T> plan_dot_dense(const CArray<T>& C, const CArray<T>& hr, const CArray<T>& hc, const CArray<T>& scale,
                         int num_threads, const std::string& isa) {
  if (C.ndim() != 3) throw std::invalid_argument("C must have shape (B, n, m), got " + shape_str(C));
  const int64_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  check_shape("hr", hr, {B, n});
  check_shape("hc", hc, {B, m});
  check_scale(scale, B);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);
  CArray<T> out({B});
  const T *pc = C.data(), *pr = hr.data(), *ph = hc.data(), *ps = scale.data();
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    fastot::plan_dot_dense<T>(pc, pr, ph, ps, B, n, m, po, num_threads, isa);
  }
  return out;
}

template <typename T>
CArray<T> plan_dot_sqeuclidean(const CArray<T>& x, const CArray<T>& y, const CArray<T>& hr, const CArray<T>& hc,
                               const CArray<T>& scale, int num_threads, const std::string& isa) {
  const std::array<int64_t, 4> shp = point_shapes(x, y);
  const int64_t B = shp[0], n = shp[1], m = shp[2], d = shp[3];
  check_shape("hr", hr, {B, n});
  check_shape("hc", hc, {B, m});
  check_scale(scale, B);
  if (num_threads < 1) throw std::invalid_argument("num_threads must be >= 1");
  fastot::softmin_isa(isa);
  CArray<T> out({B});
  const T *px = x.data(), *py_ = y.data(), *pr = hr.data(), *ph = hc.data(), *ps = scale.data();
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    fastot::plan_dot_sqeuclidean<T>(px, py_, pr, ph, ps, B, n, m, d, po, num_threads, isa);
  }
  return out;
}

template <typename T>
void def_plan_dot(py::module_& mod) {
  mod.def("plan_dot_dense", &plan_dot_dense<T>, py::arg("C").noconvert(), py::arg("hr").noconvert(),
          py::arg("hc").noconvert(), py::arg("scale").noconvert(), py::arg("num_threads") = 1,
          py::arg("isa") = "auto",
          "Linear cost of a plan: out[b] = sum_ij P_ij C[b, i, j], P_ij = exp(hr[b, i] + hc[b, j] - scale[b] "
          "C[b, i, j]) (0 where C = +inf); C (B, n, m), hr (B, n), hc (B, m), scale (B,) -> (B,).");
  mod.def("plan_dot_sqeuclidean", &plan_dot_sqeuclidean<T>, py::arg("x").noconvert(), py::arg("y").noconvert(),
          py::arg("hr").noconvert(), py::arg("hc").noconvert(), py::arg("scale").noconvert(),
          py::arg("num_threads") = 1, py::arg("isa") = "auto",
          "plan_dot_dense with C = |x_i - y_j|^2 computed on the fly (never n x m).");
}

template <typename T>
void def_steps(py::module_& mod, const char* doc_dense, const char* doc_sq) {
  auto dense = [](const CArray<T>& C, const CArray<T>& hg, const CArray<T>& sf, const CArray<T>& log_a,
                  const CArray<T>& coef, const CArray<T>& sg, std::optional<CArray<T>> cap,
                  std::optional<CArray<uint8_t>> active, int num_threads, const std::string& isa) {
    return sinkhorn_step_dense<T>(C, StepInputs<T>{hg, sf, log_a, coef, sg, cap, active}, num_threads, isa);
  };
  auto sq = [](const CArray<T>& x, const CArray<T>& y, const CArray<T>& hg, const CArray<T>& sf,
               const CArray<T>& log_a, const CArray<T>& coef, const CArray<T>& sg, std::optional<CArray<T>> cap,
               std::optional<CArray<uint8_t>> active, int num_threads, const std::string& isa) {
    return sinkhorn_step_sqeuclidean<T>(x, y, StepInputs<T>{hg, sf, log_a, coef, sg, cap, active}, num_threads,
                                        isa);
  };
  mod.def("sinkhorn_step_dense", dense, py::arg("C").noconvert(), py::arg("hg").noconvert(),
          py::arg("sf").noconvert(), py::arg("log_a").noconvert(), py::arg("coef").noconvert(),
          py::arg("sg").noconvert(), py::arg("cap").noconvert() = py::none(),
          py::arg("active").noconvert() = py::none(), py::arg("num_threads") = 1, py::arg("isa") = "auto",
          doc_dense);
  mod.def("sinkhorn_step_sqeuclidean", sq, py::arg("x").noconvert(), py::arg("y").noconvert(),
          py::arg("hg").noconvert(), py::arg("sf").noconvert(), py::arg("log_a").noconvert(),
          py::arg("coef").noconvert(), py::arg("sg").noconvert(), py::arg("cap").noconvert() = py::none(),
          py::arg("active").noconvert() = py::none(), py::arg("num_threads") = 1, py::arg("isa") = "auto", doc_sq);
}

template <typename T>
CArray<T> exp_approx(const CArray<T>& x, bool full_range, const std::string& isa) {
  CArray<T> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T* px = x.data();
  T* po = out.mutable_data();
  const int64_t count = x.size();
  {
    py::gil_scoped_release release;
    fastot::exp_approx<T>(px, count, po, full_range, isa);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "fastot's torch-free C++ kernels";
  mod.def("lsa_batch", &lsa_batch<double>, py::arg("cost").noconvert(), py::arg("num_threads") = 1,
          py::arg("isa") = "auto",
          "Exact assignment for a (B, n, m) float64 batch, n <= m. Returns (col4row, u, v, status); "
          "status 0 = ok, 1 = infeasible, 2 = NaN or -inf in the input. isa: 'auto' or one of "
          "available_isas().");
  mod.def("lsa_batch", &lsa_batch<float>, py::arg("cost").noconvert(), py::arg("num_threads") = 1,
          py::arg("isa") = "auto", "float32 overload: solved in float32 arithmetic.");
  mod.def("lse_dense", &lse_dense<double>, py::arg("C").noconvert(), py::arg("h").noconvert(),
          py::arg("scale").noconvert(), py::arg("transpose") = false, py::arg("num_threads") = 1,
          py::arg("isa") = "auto",
          "Batched log-sum-exp over a dense float64 cost C (B, n, m) (C-contiguous; h, scale the same dtype). "
          "transpose=False: h (B, m) -> out[b, i] = log sum_j exp(h[b, j] - scale[b] * C[b, i, j]), (B, n); "
          "transpose=True: h (B, n) -> out[b, j] = log sum_i exp(h[b, i] - scale[b] * C[b, i, j]), (B, m). "
          "C = +inf and h = -inf give zero terms; an empty sum gives -inf; scale must be > 0 and finite.");
  mod.def("lse_dense", &lse_dense<float>, py::arg("C").noconvert(), py::arg("h").noconvert(),
          py::arg("scale").noconvert(), py::arg("transpose") = false, py::arg("num_threads") = 1,
          py::arg("isa") = "auto", "float32 overload, accumulated in float32.");
  mod.def("lse_sqeuclidean", &lse_sqeuclidean<double>, py::arg("x").noconvert(), py::arg("y").noconvert(),
          py::arg("h").noconvert(), py::arg("scale").noconvert(), py::arg("num_threads") = 1,
          py::arg("isa") = "auto",
          "Batched log-sum-exp with the squared-Euclidean cost computed on the fly (never n x m): x (B, n, d), "
          "y (B, m, d), h (B, m), scale (B,) float64 -> out[b, i] = log sum_j exp(h[b, j] - scale[b] * "
          "|x[b, i] - y[b, j]|^2), (B, n). The column direction is the same call with x and y swapped.");
  mod.def("lse_sqeuclidean", &lse_sqeuclidean<float>, py::arg("x").noconvert(), py::arg("y").noconvert(),
          py::arg("h").noconvert(), py::arg("scale").noconvert(), py::arg("num_threads") = 1,
          py::arg("isa") = "auto", "float32 overload, accumulated in float32.");
  def_steps<double>(
      mod,
      "Fused Sinkhorn step over a dense float64 cost C (B, n, m): S[b, i] = LSE_j (hg[b, j] - sf[b] C[b, i, j]), "
      "f = min(coef[b] S, cap), T[b, j] = LSE_i (log_a[b, i] + sg[b] f[b, i] - sg[b] C[b, i, j]); one pass over "
      "C. hg (B, m), sf (B,), log_a (B, n), coef (B,), sg (B,), cap (B, n) or None, active (B,) uint8 or None "
      "(inactive problems are skipped; their rows are NaN). Returns (S (B, n), T (B, m)).",
      "Fused Sinkhorn step with the squared-Euclidean cost of x (B, n, d), y (B, m, d) computed on the fly "
      "(never n x m); otherwise as sinkhorn_step_dense.");
  def_steps<float>(mod, "float32 overload, accumulated in float32.", "float32 overload, accumulated in float32.");
  def_plan_dot<double>(mod);
  def_plan_dot<float>(mod);
  mod.def("_exp_approx", &exp_approx<double>, py::arg("x").noconvert(), py::arg("full_range") = false,
          py::arg("isa") = "auto",
          "Test hook: the log-sum-exp kernels' vectorised exp, elementwise. full_range=False (the kernels' "
          "variant) is valid for x <= 0 only.");
  mod.def("_exp_approx", &exp_approx<float>, py::arg("x").noconvert(), py::arg("full_range") = false,
          py::arg("isa") = "auto");
  mod.def("available_isas", &fastot::available_isas,
          "Instruction-set copies of the CPU kernels this build holds and this CPU runs, widest first.");
  mod.attr("STATUS_OK") = static_cast<int>(fastot::Status::ok);
  mod.attr("STATUS_INFEASIBLE") = static_cast<int>(fastot::Status::infeasible);
  mod.attr("STATUS_INVALID") = static_cast<int>(fastot::Status::invalid);
#if defined(FASTOT_HAVE_OPENMP)
  mod.attr("HAVE_OPENMP") = true;
#else
  mod.attr("HAVE_OPENMP") = false;
#endif
}
