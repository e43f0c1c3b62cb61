# Fuzz targets: every tests/fuzz/fuzz_<name>.c (docs/fuzzing.md).  Included from
# the top-level CMakeLists.txt.
#
# Always: fuzz_<name>_replay, the target linked with replay.c (a main() that
# feeds it files) and built like every test, and the CTest test
# fuzz_<name>_replay over the seed corpus and the crash reproducers, so a
# crash found once stays fixed.
#
# With -DVTIO_FUZZ=ON and clang: fuzz_<name>, the libFuzzer binary, linked
# against a copy of the library compiled with coverage instrumentation and
# AddressSanitizer + UBSan (the normal library and tests are untouched).
# `make fuzz` builds and runs those.

set(VTIO_FUZZ_DIR ${PROJECT_SOURCE_DIR}/tests/fuzz)
file(GLOB VTIO_FUZZ_SOURCES CONFIGURE_DEPENDS ${VTIO_FUZZ_DIR}/fuzz_*.c)
set(VTIO_FUZZ_TARGETS "")
foreach(src ${VTIO_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" name ${name})
  list(APPEND VTIO_FUZZ_TARGETS ${name})
endforeach()
option(VTIO_FUZZ "Build the libFuzzer targets (needs clang)" OFF)

foreach(name ${VTIO_FUZZ_TARGETS})
  add_executable(fuzz_${name}_replay ${VTIO_FUZZ_DIR}/fuzz_${name}.c ${VTIO_FUZZ_DIR}/replay.c)
  target_include_directories(fuzz_${name}_replay PRIVATE
    ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(fuzz_${name}_replay PRIVATE vtio_static)
  set_target_properties(fuzz_${name}_replay PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  add_test(NAME fuzz_${name}_replay COMMAND fuzz_${name}_replay
    ${VTIO_FUZZ_DIR}/corpus/${name} ${VTIO_FUZZ_DIR}/regress/${name})
  set_tests_properties(fuzz_${name}_replay PROPERTIES TIMEOUT 300)
endforeach()

if(VTIO_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "VTIO_FUZZ needs clang (configure with CC=clang)")
  endif()
  set(VTIO_FUZZ_SAN address,undefined)
  add_library(vtio_fuzzlib STATIC ${VTIO_SOURCES})
  target_include_directories(vtio_fuzzlib
    PUBLIC ${PROJECT_SOURCE_DIR}/include
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(vtio_fuzzlib PRIVATE VTIO_BUILDING)
  target_compile_options(vtio_fuzzlib PRIVATE -fvisibility=hidden
    -fsanitize=fuzzer-no-link,${VTIO_FUZZ_SAN} -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  target_link_libraries(vtio_fuzzlib PUBLIC Threads::Threads)
  foreach(name ${VTIO_FUZZ_TARGETS})
    add_executable(fuzz_${name} ${VTIO_FUZZ_DIR}/fuzz_${name}.c)
    target_include_directories(fuzz_${name} PRIVATE
      ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
    target_compile_options(fuzz_${name} PRIVATE
      -fsanitize=fuzzer,${VTIO_FUZZ_SAN} -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,${VTIO_FUZZ_SAN})
    target_link_libraries(fuzz_${name} PRIVATE vtio_fuzzlib)
    set_target_properties(fuzz_${name} PROPERTIES
      RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
  endforeach()
endif()
