// txfn/internal/status_macros.h — moved to <txfn/status_macros.h>; this
// forwarding header stays for code written against the old name.
#ifndef TXFN_INTERNAL_STATUS_MACROS_H_
#define TXFN_INTERNAL_STATUS_MACROS_H_

#include "txfn/status_macros.h"  // IWYU pragma: export

#endif  // TXFN_INTERNAL_STATUS_MACROS_H_
