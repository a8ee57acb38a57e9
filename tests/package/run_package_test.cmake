# The package test (ctest: herald_package_test), run with `cmake -P`:
#  1. installs this build tree into a temporary prefix (cmake --install);
#  2. configures and builds tests/package/ against that prefix as an outside
#     project, with the same generator, compiler, build type and flags (so
#     sanitizer builds link too);
#  3. runs it on a bus of its own, with HERALD_NO_AUTOSTART=1 and a private
#     HERALD_RUN_DIR, and checks the bus left nothing in /dev/shm;
#  4. removes every temporary directory, pass or fail.
#
# Arguments (-D...): HERALD_BUILD_DIR HERALD_PACKAGE_DIR HERALD_WORK_DIR
#   HERALD_GENERATOR HERALD_CXX_COMPILER, and optionally HERALD_MAKE_PROGRAM
#   HERALD_BUILD_TYPE HERALD_CXX_FLAGS HERALD_EXE_LINKER_FLAGS.
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS HERALD_BUILD_DIR HERALD_PACKAGE_DIR HERALD_WORK_DIR HERALD_GENERATOR HERALD_CXX_COMPILER)
  if("${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_package_test.cmake: -D${var}=... is required")
  endif()
endforeach()

# Unique names per run: a random tag (seeded with the time in microseconds)
# plus a hash of the build dir, so runs of different presets never share a
# bus or a directory.
string(TIMESTAMP now_us "%s%f")
string(RANDOM LENGTH 8 ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789" RANDOM_SEED "${now_us}" tag)
string(MD5 build_hash "${HERALD_BUILD_DIR}")
string(SUBSTRING "${build_hash}" 0 6 build_hash)
set(bus "pkg-${build_hash}-${tag}")
set(scratch "${HERALD_WORK_DIR}/run-${tag}")
set(prefix "${scratch}/prefix")
set(project_build "${scratch}/build")
# The run dir holds the bus's socket and lock: keep its path short (a Unix
# socket path must stay under 108 bytes, and the build tree may be deep).
set(tmp "$ENV{TMPDIR}")
if(tmp STREQUAL "")
  set(tmp "/tmp")
endif()
set(run_dir "${tmp}/herald-pkg-${tag}")

function(cleanup)
  file(GLOB leftovers "/dev/shm/herald.${bus}.*")
  if(leftovers)
    file(REMOVE ${leftovers})
  endif()
  file(REMOVE_RECURSE "${scratch}" "${run_dir}")
endfunction()

function(fail message)
  cleanup()
  message(FATAL_ERROR "herald package test: ${message}")
endfunction()

# Runs a command, its output going to ctest's log; fails the test if it fails.
function(step what)
  message(STATUS "herald package test: ${what}")
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    fail("${what} failed (${rc})")
  endif()
endfunction()

cleanup()
file(MAKE_DIRECTORY "${scratch}" "${run_dir}")

# 1. Install.
set(config_args "")
if(NOT "${HERALD_BUILD_TYPE}" STREQUAL "")
  set(config_args --config "${HERALD_BUILD_TYPE}")
endif()
step("install ${HERALD_BUILD_DIR} into ${prefix}"
  "${CMAKE_COMMAND}" --install "${HERALD_BUILD_DIR}" --prefix "${prefix}" ${config_args})

# 2. Configure and build the outside project against the install only.
set(configure_args
  -S "${HERALD_PACKAGE_DIR}" -B "${project_build}" -G "${HERALD_GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${HERALD_CXX_COMPILER}"
  "-DCMAKE_BUILD_TYPE=${HERALD_BUILD_TYPE}"
  "-DCMAKE_CXX_FLAGS=${HERALD_CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${HERALD_EXE_LINKER_FLAGS}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(NOT "${HERALD_MAKE_PROGRAM}" STREQUAL "")
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${HERALD_MAKE_PROGRAM}")
endif()
step("configure the outside project" "${CMAKE_COMMAND}" ${configure_args})

# find_package must have found the temporary install, not some other herald.
file(STRINGS "${project_build}/CMakeCache.txt" herald_dir REGEX "^herald_DIR:")
string(REGEX REPLACE "^herald_DIR:[A-Z]+=" "" herald_dir "${herald_dir}")
cmake_path(IS_PREFIX prefix "${herald_dir}" NORMALIZE found_ours)
if(NOT found_ours)
  fail("find_package(herald) found '${herald_dir}', not the install in ${prefix}")
endif()

step("build the outside project" "${CMAKE_COMMAND}" --build "${project_build}")

# 3. Run it on its own bus, with no daemon autostart.
set(exe "${project_build}/herald_package_test")
message(STATUS "herald package test: run ${exe} ${bus}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env --unset=HERALD_BUS
          HERALD_NO_AUTOSTART=1 "HERALD_RUN_DIR=${run_dir}"
          "${exe}" "${bus}"
  RESULT_VARIABLE rc
  TIMEOUT 60)
if(NOT rc EQUAL 0)
  fail("${exe} ${bus} failed (${rc})")
endif()
file(GLOB leftovers RELATIVE "/dev/shm" "/dev/shm/herald.${bus}.*")
if(leftovers)
  fail("Bus::destroy(\"${bus}\") left objects in /dev/shm: ${leftovers}")
endif()

# 4. Clean up.
cleanup()
message(STATUS "herald package test: passed")
