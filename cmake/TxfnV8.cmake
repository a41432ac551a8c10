# V8 from Debian's libnode, unpacked (not installed) into TXFN_V8_PREFIX by
# scripts/install-deps. Defines the imported target txfn::libnode.
set(_txfn_v8_lib "${TXFN_V8_PREFIX}/lib/x86_64-linux-gnu/libnode.so.108")
set(_txfn_v8_include "${TXFN_V8_PREFIX}/include/node")
if(NOT EXISTS "${_txfn_v8_lib}" OR NOT EXISTS "${_txfn_v8_include}/v8.h")
  message(FATAL_ERROR "V8 not found under TXFN_V8_PREFIX=${TXFN_V8_PREFIX}. "
                      "Run ./scripts/install-deps, or configure with -DTXFN_WITH_V8=OFF.")
endif()
if(NOT TARGET txfn::libnode)
  add_library(txfn::libnode SHARED IMPORTED GLOBAL)
  set_target_properties(txfn::libnode PROPERTIES
    IMPORTED_LOCATION "${_txfn_v8_lib}"
    IMPORTED_NO_SONAME OFF
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_txfn_v8_include}"
    INTERFACE_INCLUDE_DIRECTORIES "${_txfn_v8_include}")
endif()
