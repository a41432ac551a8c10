// UtilizationController; see txfn/utilization_controller.h.
#include "txfn/utilization_controller.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "txfn/internal/strings.h"

namespace txfn {

absl::StatusOr<UtilizationController> UtilizationController::Create(
    UtilizationControllerOptions o) {
  auto check = [](std::string_view name, double v, double lo, double hi,
                  bool lo_open) -> absl::Status {
    if (std::isnan(v) || v > hi || v < lo || (lo_open && v == lo)) {
      return absl::InvalidArgumentError(internal::StrCat("UtilizationControllerOptions.", name,
                                                         " is ", v, "; it must be in ",
                                                         lo_open ? "(" : "[", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  };
  for (absl::Status s :
       {check("target", o.target, 0, 1, true), check("gain", o.gain, 0, 100, true),
        check("smoothing", o.smoothing, 0, 1, true), check("max_step", o.max_step, 0, 1, true),
        check("deadband", o.deadband, 0, 1, false), check("min_share", o.min_share, 0, 1, false),
        check("max_share", o.max_share, 0, 1, false)}) {
    if (!s.ok()) return s;
  }
  if (o.min_share > o.max_share) {
    return absl::InvalidArgumentError("UtilizationControllerOptions.min_share > max_share");
  }
  if (absl::Status s = check("initial_share", o.initial_share, o.min_share, o.max_share, false);
      !s.ok()) {
    return s;
  }
  return UtilizationController(o);
}

UtilizationController::UtilizationController(UtilizationControllerOptions options)
    : options_(options), share_(options.initial_share), smoothed_(options.target) {}

double UtilizationController::Update(double utilization) {
  if (std::isnan(utilization)) return share_;
  utilization = std::clamp(utilization, 0.0, 2.0);
  if (!primed_) {
    smoothed_ = utilization;
    primed_ = true;
  } else {
    smoothed_ += options_.smoothing * (utilization - smoothed_);
  }
  const double error = options_.target - smoothed_;
  if (std::abs(error) <= options_.deadband) return share_;
  const double step = std::clamp(options_.gain * error, -options_.max_step, options_.max_step);
  share_ = std::clamp(share_ + step, options_.min_share, options_.max_share);
  return share_;
}

}  // namespace txfn
