// Error-propagation macros. Abseil 20220623 (Debian bookworm) ships neither
// RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so the project defines its own here.
#ifndef FOTSERVE_BASE_STATUS_MACROS_H_
#define FOTSERVE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FOT_CONCAT_INNER_(a, b) a##b
#define FOT_CONCAT_(a, b) FOT_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define FOT_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status fot_status_ = (expr);       \
    if (!fot_status_.ok()) return fot_status_; \
  } while (0)

// `lhs = value of expr`, or returns its error status.
#define FOT_ASSIGN_OR_RETURN(lhs, expr) \
  FOT_ASSIGN_OR_RETURN_IMPL_(FOT_CONCAT_(fot_statusor_, __LINE__), lhs, expr)
#define FOT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // FOTSERVE_BASE_STATUS_MACROS_H_
