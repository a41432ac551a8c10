# cmake -P script: builds and runs one consumer project (MODE = find_package or
# add_subdirectory) against this txfn. Fails on any step's failure.
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()

set(consumer_src "${TXFN_SOURCE_DIR}/tests/consumer/${MODE}")
set(consumer_build "${WORK_DIR}/build")
if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/install")
  file(REMOVE_RECURSE "${prefix}")
  step(${CMAKE_COMMAND} --install "${TXFN_BUILD_DIR}" --prefix "${prefix}")
  set(configure_args -DCMAKE_PREFIX_PATH=${prefix})
else()
  set(configure_args -DTXFN_SOURCE_DIR=${TXFN_SOURCE_DIR})
endif()
step(${CMAKE_COMMAND} -S "${consumer_src}" -B "${consumer_build}" -G "${GENERATOR}"
     -DCMAKE_BUILD_TYPE=Release ${configure_args})
step(${CMAKE_COMMAND} --build "${consumer_build}" -j 2)
step("${consumer_build}/consumer")
message(STATUS "consumer (${MODE}) built and ran")
