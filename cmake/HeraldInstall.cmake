# Install and export herald's libraries so another CMake project can use it:
#   find_package(herald 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE herald::runtime)
# Installed: lib/libherald_{shm,runtime}.a, include/herald/*.hpp (the public
# API only; shm/ headers are internal), lib/cmake/herald/heraldConfig*.cmake
# and heraldTargets*.cmake. tests/package/ checks all of it from outside.
include(CMakePackageConfigHelpers)

set(HERALD_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/herald")

# herald_runtime lands later; until then only herald_shm is exported.
set(herald_export_targets herald_shm)
if(TARGET herald_runtime)
  list(APPEND herald_export_targets herald_runtime)
endif()

install(TARGETS ${herald_export_targets}
  EXPORT heraldTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/runtime/include/herald"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  FILES_MATCHING PATTERN "*.hpp")
install(EXPORT heraldTargets
  NAMESPACE herald::
  FILE heraldTargets.cmake
  DESTINATION "${HERALD_INSTALL_CMAKEDIR}")

# The find_dependency() calls heraldConfig.cmake makes. Static libraries
# export even their PRIVATE link dependencies, so every imported target an
# exported library links must be found by the consumer as well. Threads and
# Boost (herald_shm) always; the rest from what the targets really link, and
# a warning for an imported target this file does not know how to find.
set(herald_config_deps "find_dependency(Threads)\nfind_dependency(Boost 1.74)")
set(herald_install_find_modules "")
set(herald_linked "")  # "<target>|<imported dependency>" for every link
foreach(target IN LISTS herald_export_targets)
  get_target_property(link_libs ${target} LINK_LIBRARIES)
  get_target_property(interface_libs ${target} INTERFACE_LINK_LIBRARIES)
  foreach(item IN LISTS link_libs interface_libs)
    if(item MATCHES "\\$<BUILD_INTERFACE:")
      continue()  # needed to build herald only (header-only), not to link it
    endif()
    string(REGEX MATCHALL "[A-Za-z0-9_.+-]+::[A-Za-z0-9_.+-]+" deps "${item}")
    foreach(dep IN LISTS deps)
      list(APPEND herald_linked "${target}|${dep}")
    endforeach()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES herald_linked)
foreach(link IN LISTS herald_linked)
  string(REPLACE "|" ";" link "${link}")
  list(GET link 0 target)
  list(GET link 1 dep)
  if(dep MATCHES "^herald::" OR dep STREQUAL "Threads::Threads" OR dep STREQUAL "Boost::headers")
    continue()
  elseif(dep STREQUAL "ConcurrentQueue::ConcurrentQueue")
    # Debian ships no config file for it: install our find module beside
    # heraldConfig.cmake and look there first.
    if(NOT herald_install_find_modules)
      string(APPEND herald_config_deps "\n"
        "set(_herald_module_path \"\${CMAKE_MODULE_PATH}\")\n"
        "list(PREPEND CMAKE_MODULE_PATH \"\${CMAKE_CURRENT_LIST_DIR}\")\n"
        "find_dependency(ConcurrentQueue)\n"
        "set(CMAKE_MODULE_PATH \"\${_herald_module_path}\")")
      list(APPEND herald_install_find_modules "${PROJECT_SOURCE_DIR}/cmake/FindConcurrentQueue.cmake")
    endif()
  else()
    message(WARNING "herald: ${target} links ${dep}, which heraldConfig.cmake does not find: "
                    "an installed herald will not link. Teach cmake/HeraldInstall.cmake its find_dependency().")
  endif()
endforeach()
set(HERALD_CONFIG_DEPENDENCIES "${herald_config_deps}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/heraldConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/heraldConfig.cmake"
  INSTALL_DESTINATION "${HERALD_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/heraldConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
    "${PROJECT_BINARY_DIR}/heraldConfig.cmake"
    "${PROJECT_BINARY_DIR}/heraldConfigVersion.cmake"
    ${herald_install_find_modules}
  DESTINATION "${HERALD_INSTALL_CMAKEDIR}")

# heraldd and the herald CLI get their install(TARGETS heraldd herald
# RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}) here once daemon/ and tools/
# define them (guarded by if(TARGET ...) like herald_runtime above). They
# are programs, not part of the heraldTargets export.
