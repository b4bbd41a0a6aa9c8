// pybind11 module fastot._C: NumPy arrays in, NumPy arrays out, GIL released
// around every kernel. No libtorch: tensors arrive as NumPy views.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "lsa.h"

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
