// txfn/status_macros.h — early-return helpers for absl::Status code.
//
// abseil 20220623 (Debian's) has no public status macros, so txfn keeps two,
// used by txfn's header examples and free for hosts to use:
//
//   absl::StatusOr<int> Parse(std::string_view s);
//   absl::Status Use(std::string_view s) {
//     TXFN_ASSIGN_OR_RETURN(int n, Parse(s));
//     TXFN_RETURN_IF_ERROR(Check(n));
//     return absl::OkStatus();
//   }
#ifndef TXFN_STATUS_MACROS_H_
#define TXFN_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status from the enclosing function if `expr` is not OK.
#define TXFN_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status txfn_status_ = (expr);        \
    if (!txfn_status_.ok()) return txfn_status_; \
  } while (false)

#define TXFN_STATUS_CONCAT_INNER_(a, b) a##b
#define TXFN_STATUS_CONCAT_(a, b) TXFN_STATUS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else
// moves the value into `lhs` (a declaration or an lvalue).
#define TXFN_ASSIGN_OR_RETURN(lhs, rexpr) \
  TXFN_ASSIGN_OR_RETURN_IMPL_(TXFN_STATUS_CONCAT_(txfn_statusor_, __LINE__), lhs, rexpr)

// `statusor` names a variable and `lhs` may be a declaration, so neither can
// be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define TXFN_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)
// NOLINTEND(bugprone-macro-parentheses)

#endif  // TXFN_STATUS_MACROS_H_
