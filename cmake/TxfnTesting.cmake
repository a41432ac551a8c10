# txfn_test(NAME SOURCES ... LIBS ... [STRESS] [LABELS ...] [TIMEOUT s])
#
# One googletest binary = one ctest test. STRESS marks concurrency stress tests:
# they are the only tests built in the ThreadSanitizer flavour (TXFN_STRESS_ONLY).
function(txfn_test name)
  cmake_parse_arguments(T "STRESS" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(TXFN_STRESS_ONLY AND NOT T_STRESS)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} txfn_warnings GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  set(labels ${T_LABELS})
  if(T_STRESS)
    list(APPEND labels stress)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${T_TIMEOUT})
endfunction()

# txfn_fuzzer(NAME SOURCES ... LIBS ... [SECONDS s] [ARGS ...]): a libFuzzer target, run by
# ctest for a short bounded time from an empty corpus. Only with TXFN_BUILD_FUZZERS.
function(txfn_fuzzer name)
  cmake_parse_arguments(F "" "SECONDS" "SOURCES;LIBS;ARGS" ${ARGN})
  if(NOT TXFN_BUILD_FUZZERS OR TXFN_STRESS_ONLY)
    return()
  endif()
  if(NOT F_SECONDS)
    set(F_SECONDS 10)
  endif()
  add_executable(${name} ${F_SOURCES})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${F_LIBS} txfn_warnings)
  set(corpus "${CMAKE_CURRENT_BINARY_DIR}/${name}_corpus")
  file(MAKE_DIRECTORY "${corpus}")
  add_test(NAME ${name}
           COMMAND ${name} -max_total_time=${F_SECONDS} -rss_limit_mb=2048 -print_final_stats=0
                   ${F_ARGS} "${corpus}")
  set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 120)
endfunction()
