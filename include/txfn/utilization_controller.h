// txfn/utilization_controller.h — steers the opportunistic share S toward a
// target worker utilization (XFaaS's Utilization Controller).
//
// Opportunistic calls run at r0 * S per function, S in [0, 1]. When workers
// are busier than the target, S goes down and opportunistic calls wait in the
// queue (time-shifted to a quieter period); when they are idle, S goes up.
//
//   txfn::UtilizationController controller = *txfn::UtilizationController::Create({});
//   for (each sampling period) {
//     double s = controller.Update(measured_utilization);   // e.g. busy CPU / total
//     scheduler.SetOpportunisticShare(s);
//   }
//
// The control law (an integral controller on a smoothed signal, damped):
//   u_s <- u_s + smoothing * (u - u_s)           exponential smoothing of samples
//   e    = target - u_s                          (no change inside +-deadband)
//   S   <- clamp(S + clamp(gain * e, +-max_step), min_share, max_share)
// With gain * (dU/dS) below 1 the loop does not overshoot; the defaults are
// damped for a plant where S = 1 adds up to ~0.5 of full utilization (tested
// with a step in background load: no oscillation).
//
// Thread safety: not thread-safe; one owner updates it (the scheduler does so
// under its lock).
#ifndef TXFN_UTILIZATION_CONTROLLER_H_
#define TXFN_UTILIZATION_CONTROLLER_H_

#include "absl/status/statusor.h"

namespace txfn {

struct UtilizationControllerOptions {
  double target = 0.75;    // utilization to steer toward, in (0, 1]
  double gain = 0.5;       // S per unit of error per update
  double smoothing = 0.3;  // weight of a new sample, in (0, 1]
  double max_step = 0.1;   // largest change of S per update
  double deadband = 0.01;  // |error| below this changes nothing
  double initial_share = 1.0;
  double min_share = 0.0;
  double max_share = 1.0;
};

class UtilizationController {
 public:
  // InvalidArgument naming the option for a value out of its range (above),
  // min_share > max_share, initial_share outside [min, max], or NaN.
  [[nodiscard]] static absl::StatusOr<UtilizationController> Create(
      UtilizationControllerOptions options);

  // Feeds one utilization sample (clamped to [0, 2]; NaN is ignored) and
  // returns the new share S.
  double Update(double utilization);
  double share() const { return share_; }
  double smoothed_utilization() const { return smoothed_; }
  const UtilizationControllerOptions& options() const { return options_; }

 private:
  explicit UtilizationController(UtilizationControllerOptions options);

  UtilizationControllerOptions options_;
  double share_;
  double smoothed_;
  bool primed_ = false;  // the first sample initialises the smoothing
};

}  // namespace txfn

#endif  // TXFN_UTILIZATION_CONTROLLER_H_
