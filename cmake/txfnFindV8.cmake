# Defines the imported target txfn::libnode: V8 from Debian's libnode (packages
# libnode108 and libnode-dev), that is TXFN_V8_PREFIX/include/node/v8.h and
# TXFN_V8_PREFIX/lib/<multiarch>/libnode.so.108, with the ICU libnode links
# (libicu-dev, found by CMake's FindICU). TXFN_V8_PREFIX defaults to
# /usr, where Debian installs them; txfn's own build points it at the copy
# scripts/install-deps unpacks into .deps/. The multiarch directory comes from
# CMAKE_LIBRARY_ARCHITECTURE (set by project() on Debian), else plain lib/.
#
# Used by txfn's build (cmake/TxfnV8.cmake) and, installed beside
# txfnConfig.cmake, by every find_package(txfn): the installed package records
# no path to V8, it looks for it when the consumer configures. On failure it
# leaves txfn::libnode undefined and says why in _txfn_v8_error.
set(_txfn_v8_error "")
if(NOT TARGET txfn::libnode)
  if(TXFN_V8_PREFIX)
    set(_txfn_v8_prefix "${TXFN_V8_PREFIX}")
  else()
    set(_txfn_v8_prefix "/usr")
  endif()
  set(_txfn_v8_suffixes lib)
  if(CMAKE_LIBRARY_ARCHITECTURE)
    list(PREPEND _txfn_v8_suffixes "lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  endif()
  find_library(_txfn_v8_lib NAMES libnode.so.108 PATHS "${_txfn_v8_prefix}"
               PATH_SUFFIXES ${_txfn_v8_suffixes} NO_DEFAULT_PATH NO_CACHE)
  find_path(_txfn_v8_include v8.h PATHS "${_txfn_v8_prefix}/include/node" NO_DEFAULT_PATH
            NO_CACHE)
  # ICU (libicu-dev), the one libnode is built against: txfn pins its process-wide default
  # time zone and locale (lib/v8/platform.cc), which V8 reads.
  find_package(ICU QUIET COMPONENTS uc i18n)
  if(_txfn_v8_lib AND _txfn_v8_include AND ICU_FOUND)
    add_library(txfn::libnode SHARED IMPORTED)
    set_target_properties(txfn::libnode PROPERTIES
      IMPORTED_LOCATION "${_txfn_v8_lib}"
      INTERFACE_INCLUDE_DIRECTORIES "${_txfn_v8_include}"
      INTERFACE_LINK_LIBRARIES "ICU::i18n;ICU::uc")
  elseif(_txfn_v8_lib AND _txfn_v8_include)
    set(_txfn_v8_error "ICU (uc and i18n, Debian's libicu-dev) not found: V8 needs it.")
  else()
    string(CONCAT _txfn_v8_error
        "V8 (Debian's libnode 108: include/node/v8.h and lib/${CMAKE_LIBRARY_ARCHITECTURE}/libnode.so.108) "
        "not found under TXFN_V8_PREFIX=${_txfn_v8_prefix}. Install libnode-dev, or set "
        "TXFN_V8_PREFIX to where libnode108 and libnode-dev are unpacked (txfn's "
        "scripts/install-deps unpacks them into .deps/libnode/usr of the txfn source tree: "
        "-DTXFN_V8_PREFIX=/path/to/txfn/.deps/libnode/usr).")
  endif()
  unset(_txfn_v8_lib)
  unset(_txfn_v8_include)
  unset(_txfn_v8_prefix)
  unset(_txfn_v8_suffixes)
endif()
