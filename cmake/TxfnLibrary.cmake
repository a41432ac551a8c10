# txfn_library(NAME EXPORT_NAME SOURCES ... PUBLIC_LIBS ... PRIVATE_LIBS ... [NO_INSTALL])
# Defines txfn_<NAME> with alias txfn::<EXPORT_NAME>, includes include/, and
# requires C++20 of whoever links it (the headers use it), and
# registers it in the txfnTargets export set unless NO_INSTALL (txfn::testing,
# which needs the consumer's googletest, is installed as an optional component
# by TxfnInstall.cmake instead). Static by default; with BUILD_SHARED_LIBS the
# libraries get VERSION and SOVERSION (0.x: major.minor, as SameMinorVersion).
function(txfn_library name)
  cmake_parse_arguments(L "INTERFACE;NO_INSTALL" "EXPORT_NAME" "SOURCES;PUBLIC_LIBS;PRIVATE_LIBS" ${ARGN})
  if(NOT L_EXPORT_NAME)
    set(L_EXPORT_NAME ${name})
  endif()
  set(target txfn_${name})
  if(L_INTERFACE)
    add_library(${target} INTERFACE)
    target_include_directories(${target} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
    target_link_libraries(${target} INTERFACE ${L_PUBLIC_LIBS})
    target_compile_features(${target} INTERFACE cxx_std_20)
  else()
    add_library(${target} ${L_SOURCES})
    target_include_directories(${target} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>
      PRIVATE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${target} PUBLIC ${L_PUBLIC_LIBS} PRIVATE ${L_PRIVATE_LIBS}
                                           $<BUILD_INTERFACE:txfn_warnings>)
    # The headers need C++20: a consumer compiles them as such whatever its default.
    target_compile_features(${target} PUBLIC cxx_std_20)
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON
      VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  endif()
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${L_EXPORT_NAME})
  add_library(txfn::${L_EXPORT_NAME} ALIAS ${target})
  if(NOT L_NO_INSTALL)
    set_property(GLOBAL APPEND PROPERTY TXFN_INSTALLED_TARGETS ${target})
  endif()
endfunction()
