# herald_warnings(<target>): the project's warning set; errors under HERALD_WERROR.
# A function on a target, not global flag strings.
function(herald_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
  if(HERALD_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(HERALD_TESTING)
    target_compile_definitions(${target} PRIVATE HERALD_TESTING=1)
  endif()
endfunction()
