# `cmake --install` layout: headers, libraries, and a txfnConfig.cmake package
# exporting the txfn:: targets (consumed by tests/consumer).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/txfn" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
get_property(_txfn_installed_targets GLOBAL PROPERTY TXFN_INSTALLED_TARGETS)
install(TARGETS ${_txfn_installed_targets}
        EXPORT txfnTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT txfnTargets NAMESPACE txfn:: DESTINATION "${CMAKE_INSTALL_LIBDIR}/cmake/txfn")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/txfnConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/txfnConfig.cmake"
  INSTALL_DESTINATION "${CMAKE_INSTALL_LIBDIR}/cmake/txfn")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/txfnConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/txfnConfig.cmake"
              "${PROJECT_BINARY_DIR}/txfnConfigVersion.cmake"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}/cmake/txfn")
