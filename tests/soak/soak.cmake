# vtio-soak (tests/soak, docs/soak.md): DMA on every channel while other
# threads map, unmap and invalidate, every byte checked.  `make soak` runs it
# for minutes; here a short run is a test, so every build (plain, ASan, TSan)
# soaks a little.  Its sources are not test_*.c: it is one program, not a
# harness test.
file(GLOB VTIO_SOAK_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/soak/*.c)
add_executable(vtio-soak ${VTIO_SOAK_SOURCES})
target_link_libraries(vtio-soak PRIVATE vtio_static)
set_target_properties(vtio-soak PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
add_test(NAME soak_short COMMAND vtio-soak --seconds 2 --mode lazy)
set_tests_properties(soak_short PROPERTIES TIMEOUT 120)
