# cmake -P script: builds and runs one consumer project (MODE = find_package or
# add_subdirectory) against this txfn. Fails on any step's failure.
#
# find_package proves the install stands on its own: it installs into a staging
# prefix, moves that prefix elsewhere (relocation), checks that no installed
# CMake or pkg-config file names the source or build tree, and builds the
# consumer from a copy of its sources outside the source tree, told only the
# moved prefix and where V8 is (TXFN_V8_PREFIX). The consumer links every
# exported target and runs the conformance suite (COMPONENTS testing); a
# second program is built with pkg-config alone; the installed txfn and
# txfn-demo run from the moved prefix. A third consumer asks for the
# components below the function runner only, with no V8 to be found
# (tests/consumer/components).
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()

set(consumer_src "${TXFN_SOURCE_DIR}/tests/consumer/${MODE}")
set(consumer_build "${WORK_DIR}/build")
if(MODE STREQUAL "find_package")
  set(stage "${WORK_DIR}/stage")
  set(prefix "${WORK_DIR}/moved/txfn")
  file(REMOVE_RECURSE "${stage}" "${WORK_DIR}/moved" "${WORK_DIR}/src" "${consumer_build}")
  step(${CMAKE_COMMAND} --install "${TXFN_BUILD_DIR}" --prefix "${stage}")
  file(MAKE_DIRECTORY "${WORK_DIR}/moved")
  file(RENAME "${stage}" "${prefix}")

  # No installed text file may name the trees txfn was built from.
  file(REAL_PATH "${TXFN_SOURCE_DIR}" source_real)
  file(REAL_PATH "${TXFN_BUILD_DIR}" build_real)
  file(GLOB_RECURSE installed_text "${prefix}/*.cmake" "${prefix}/*.pc" "${prefix}/*.h")
  foreach(f IN LISTS installed_text)
    file(READ "${f}" text)
    foreach(tree IN ITEMS "${TXFN_SOURCE_DIR}" "${source_real}" "${TXFN_BUILD_DIR}" "${build_real}"
                          "${stage}")
      string(FIND "${text}" "${tree}" at)
      if(NOT at EQUAL -1)
        message(FATAL_ERROR "installed ${f} names ${tree}")
      endif()
    endforeach()
  endforeach()

  # The consumer's sources, copied out of the source tree.
  file(COPY "${TXFN_SOURCE_DIR}/tests/consumer/consumer.cc"
            "${TXFN_SOURCE_DIR}/tests/consumer/conformance.cc"
            "${TXFN_SOURCE_DIR}/tests/consumer/pkg_config.cc" DESTINATION "${WORK_DIR}/src")
  file(COPY "${consumer_src}" "${TXFN_SOURCE_DIR}/tests/consumer/components"
       DESTINATION "${WORK_DIR}/src")
  set(consumer_src "${WORK_DIR}/src/${MODE}")
  set(configure_args -DCMAKE_PREFIX_PATH=${prefix} -DTXFN_V8_PREFIX=${V8_PREFIX}
                     -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
else()
  set(configure_args -DTXFN_SOURCE_DIR=${TXFN_SOURCE_DIR})
endif()
step(${CMAKE_COMMAND} -S "${consumer_src}" -B "${consumer_build}" -G "${GENERATOR}"
     -DCMAKE_BUILD_TYPE=Release ${configure_args})
step(${CMAKE_COMMAND} --build "${consumer_build}" -j 2)
step("${consumer_build}/consumer")

if(MODE STREQUAL "find_package")
  step("${consumer_build}/consumer_conformance" --gtest_brief=1)

  # pkg-config alone (the V8 location given as pkg-config's v8_prefix).
  file(GLOB pc_file "${prefix}/lib*/pkgconfig/txfn.pc" "${prefix}/lib/*/pkgconfig/txfn.pc")
  get_filename_component(pc_dir "${pc_file}" DIRECTORY)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
            pkg-config --define-variable=v8_prefix=${V8_PREFIX} --cflags --libs txfn
    RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs txfn failed: ${err}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  # No rpath of its own: txfn.pc's Libs carry V8's.
  step(${CXX} -o "${consumer_build}/pkg_config" "${WORK_DIR}/src/pkg_config.cc" ${flags})
  step("${consumer_build}/pkg_config")

  # Only the components below the function runner, on a "machine" without V8.
  set(no_v8 "${WORK_DIR}/no-v8")
  file(REMOVE_RECURSE "${no_v8}" "${WORK_DIR}/components-build")
  file(MAKE_DIRECTORY "${no_v8}")
  step(${CMAKE_COMMAND} -S "${WORK_DIR}/src/components" -B "${WORK_DIR}/components-build"
       -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix}
       -DTXFN_V8_PREFIX=${no_v8} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  step(${CMAKE_COMMAND} --build "${WORK_DIR}/components-build" -j 2)
  step("${WORK_DIR}/components-build/consumer")

  # The installed tools, from the moved prefix (txfn-demo finds its apps there), with no
  # LD_LIBRARY_PATH: their rpath finds V8 where they were linked against.
  step(${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH "${prefix}/bin/txfn" --help)
  step(${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH "${prefix}/bin/txfn-demo"
       --duration=0.5 --tenants=2 --storage=memory)
  if(EXISTS "${prefix}/bin/txfn-runner")  # its --help exits 1 (absl's): it must load, though
    execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
                            "${prefix}/bin/txfn-runner" --help
                    OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT out MATCHES "txfn-runner")
      message(FATAL_ERROR "the installed txfn-runner did not start:\n${out}")
    endif()
  endif()
endif()
message(STATUS "consumer (${MODE}) built and ran")
