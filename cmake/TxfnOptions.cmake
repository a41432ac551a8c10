# Compiler flags shared by every txfn target.
add_library(txfn_warnings INTERFACE)
target_compile_options(txfn_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter
  # C++20 designated initializers rely on default member initializers.
  -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # The locking rules (ABSL_GUARDED_BY ...) are checked by the compiler.
  target_compile_options(txfn_warnings INTERFACE -Wthread-safety -Werror=thread-safety)
endif()
if(TXFN_WERROR)
  target_compile_options(txfn_warnings INTERFACE -Werror)
endif()

if(TXFN_SANITIZE)
  set(txfn_sanitize_flags -fsanitize=${TXFN_SANITIZE} -fno-omit-frame-pointer
                          -fno-sanitize-recover=all)
  if(TXFN_SANITIZE MATCHES "undefined")
    # Debian's V8 is built without RTTI: the vptr check cannot work on its classes.
    list(APPEND txfn_sanitize_flags -fno-sanitize=vptr)
  endif()
  add_compile_options(${txfn_sanitize_flags})
  add_link_options(${txfn_sanitize_flags})
endif()
