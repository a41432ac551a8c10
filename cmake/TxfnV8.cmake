# V8 from Debian's libnode, unpacked (not installed) into TXFN_V8_PREFIX by
# scripts/install-deps. Defines the imported target txfn::libnode (see
# txfnFindV8.cmake, which find_package(txfn) uses the same way).
include("${CMAKE_CURRENT_LIST_DIR}/txfnFindV8.cmake")
if(_txfn_v8_error)
  message(FATAL_ERROR "${_txfn_v8_error} Run ./scripts/install-deps, or configure with "
                      "-DTXFN_WITH_V8=OFF.")
endif()
