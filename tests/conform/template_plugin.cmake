# The template backend as a vendor builds it: out of tree, against an installed dsrt (cmake -P).
#   1. install this build of dsrt to a temporary prefix;
#   2. configure and build backends/template with find_package(dsrt) from that prefix;
#   3. run the installed `dsrt conform --backend-plugin <plugin> --backend template --report r.json`
#      and check that every case is skipped with the template's reason, exit status 0;
#   4. load it again through DSRT_BACKEND_PATH (a folder scanned for libdsrt-*.so).
#
#   -DBINARY_DIR=<dsrt build>  -DSOURCE_DIR=<dsrt source>  -DWORK=<scratch folder>
#   -DGENERATOR=<CMake generator>  -DC_COMPILER=<C compiler>
cmake_minimum_required(VERSION 3.22)

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(prefix "${WORK}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}${err}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix "${prefix}")
file(GLOB_RECURSE config "${prefix}/*/dsrtConfig.cmake")
if(NOT config)
  message(FATAL_ERROR "the install has no dsrtConfig.cmake")
endif()
list(GET config 0 config)
get_filename_component(dsrt_dir "${config}" DIRECTORY)
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/backends/template" -B "${WORK}/build" -G "${GENERATOR}"
    -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_BUILD_TYPE=Release -Ddsrt_DIR=${dsrt_dir})
run(${CMAKE_COMMAND} --build "${WORK}/build")
set(plugin "${WORK}/build/libdsrt-template.so")
if(NOT EXISTS "${plugin}")
  message(FATAL_ERROR "the template build made no ${plugin}")
endif()
message(STATUS "built ${plugin} against ${dsrt_dir}")

set(DSRT "${prefix}/bin/dsrt")
set(REPORT "${WORK}/r.json")
set(ARGS "conform#--backend-plugin#${plugin}#--backend#template#--report#${REPORT}")
set(EXPECT_RC 0)
set(EXPECT_SUMMARY skip)
set(ALL_SKIPPED "template backend: op ")
include("${CMAKE_CURRENT_LIST_DIR}/run_conform.cmake")

execute_process(COMMAND ${CMAKE_COMMAND} -E env "DSRT_BACKEND_PATH=${WORK}/build" "${DSRT}" devices
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${out}" "template: 1 device" pos)
if(NOT rc EQUAL 0 OR pos EQUAL -1)
  message(FATAL_ERROR "DSRT_BACKEND_PATH did not load the template (${rc}):\n${out}${err}")
endif()
message(STATUS "DSRT_BACKEND_PATH loads the template too")
