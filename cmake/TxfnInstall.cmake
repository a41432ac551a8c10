# `cmake --install` layout: headers, libraries, the txfn and txfn-demo tools
# (tools/CMakeLists.txt), a relocatable txfnConfig.cmake package exporting the
# txfn:: targets, with txfn::testing as an optional component, and txfn.pc
# for pkg-config. Nothing installed names the source or build tree: V8 is
# found when the consumer configures (txfnFindV8.cmake), paths are relative to
# the installed files. tests/consumer checks both, from a moved install.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(_txfn_cmake_dir "${CMAKE_INSTALL_LIBDIR}/cmake/txfn")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/txfn" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
if(TXFN_WITH_REMOTE)  # the wire format, for clients in other languages
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/proto/" DESTINATION "${CMAKE_INSTALL_DATADIR}/txfn/proto")
endif()
# One export set per library, so find_package(txfn COMPONENTS ...) loads only
# the components asked for, with the txfn components they link, and looks for
# only their dependencies (txfn::core needs neither V8 nor SQLite).
# _txfn_component_lines becomes the config's table: per component, the txfn
# components it links (read from its link interface).
get_property(_txfn_installed_targets GLOBAL PROPERTY TXFN_INSTALLED_TARGETS)
set(_txfn_components "")
set(_txfn_component_lines "")
foreach(_txfn_target IN LISTS _txfn_installed_targets)
  get_target_property(_txfn_component ${_txfn_target} EXPORT_NAME)
  install(TARGETS ${_txfn_target}
          EXPORT txfn_${_txfn_component}Targets
          LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
          INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(EXPORT txfn_${_txfn_component}Targets NAMESPACE txfn::
          FILE "txfn-${_txfn_component}-targets.cmake" DESTINATION "${_txfn_cmake_dir}")
  get_target_property(_txfn_links ${_txfn_target} INTERFACE_LINK_LIBRARIES)
  set(_txfn_deps "")
  foreach(_txfn_link IN LISTS _txfn_links)
    if(_txfn_link MATCHES "^txfn::(.+)$" AND NOT CMAKE_MATCH_1 STREQUAL "libnode")
      list(APPEND _txfn_deps ${CMAKE_MATCH_1})
    endif()
  endforeach()
  list(APPEND _txfn_components ${_txfn_component})
  string(APPEND _txfn_component_lines
         "set(_txfn_links_${_txfn_component} \"${_txfn_deps}\")\n")
endforeach()
set(TXFN_COMPONENT_TABLE
    "set(_txfn_components \"${_txfn_components}\")\n${_txfn_component_lines}")

# txfn::testing: its own export set, loaded by find_package(txfn COMPONENTS testing).
if(TARGET txfn_testing)
  # OPTIONAL: a host that add_subdirectory()s txfn builds it only if used.
  install(TARGETS txfn_testing
          EXPORT txfnTestingTargets
          LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" OPTIONAL
          ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" OPTIONAL
          INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(EXPORT txfnTestingTargets NAMESPACE txfn:: DESTINATION "${_txfn_cmake_dir}")
endif()

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/txfnConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/txfnConfig.cmake"
  INSTALL_DESTINATION "${_txfn_cmake_dir}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/txfnConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/txfnConfig.cmake"
              "${PROJECT_BINARY_DIR}/txfnConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/txfnFindV8.cmake"
        DESTINATION "${_txfn_cmake_dir}")

# txfn.pc: every installed library and what it needs; `prefix` is relative to
# the .pc file, so a moved install still works. V8 is at Debian's place
# unless the consumer says otherwise: pkg-config --define-variable=v8_prefix=DIR.
set(_txfn_pc_libs "")
set(_txfn_pc_requires
    "absl_status absl_statusor absl_strings absl_span absl_time absl_synchronization "
    "absl_flat_hash_map absl_btree absl_hash absl_random_random absl_any_invocable "
    "absl_core_headers fmt")
foreach(_txfn_lib sqlite_engine postgres_engine engine remote wire postgres sqlite queue_sqlite queue v8 core)  # dependents first, for static linking
  if(TARGET txfn_${_txfn_lib})
    string(APPEND _txfn_pc_libs " -ltxfn_${_txfn_lib}")
  endif()
endforeach()
set(_txfn_pc_v8 "")
set(_txfn_pc_v8_cflags "")
if(TXFN_WITH_V8)
  # With an rpath: libnode.so.108 is rarely on the loader's path (Debian's libnode-dev cannot
  # be installed beside Node.js, so it is often unpacked elsewhere), and a program built
  # from these flags exited 127 without it.
  set(_txfn_pc_v8 " -L\${v8_libdir} -l:libnode.so.108 -Wl,-rpath,\${v8_libdir}")
  set(_txfn_pc_v8_cflags " -isystem \${v8_includedir}")
  string(APPEND _txfn_pc_requires " icu-i18n icu-uc")
endif()
if(TXFN_WITH_SQLITE)
  string(APPEND _txfn_pc_requires " sqlite3")
endif()
if(TXFN_WITH_POSTGRES)
  string(APPEND _txfn_pc_requires " libpq")
endif()
if(TXFN_WITH_REMOTE)
  string(APPEND _txfn_pc_requires " protobuf grpc++")
endif()
string(REPLACE ";" "" _txfn_pc_requires "${_txfn_pc_requires}")
if(CMAKE_LIBRARY_ARCHITECTURE)
  set(_txfn_pc_v8_libdir "\${v8_prefix}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
else()
  set(_txfn_pc_v8_libdir "\${v8_prefix}/lib")
endif()
file(RELATIVE_PATH _txfn_pc_to_prefix "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" _txfn_pc_to_prefix "${_txfn_pc_to_prefix}")
configure_file("${PROJECT_SOURCE_DIR}/cmake/txfn.pc.in" "${PROJECT_BINARY_DIR}/txfn.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/txfn.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
