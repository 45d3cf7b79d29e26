# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt). Copies the library's headers to
# <prefix>/<includedir>/megagrad/, rewriting their includes of the library's own folders
# ("core/tensor.h") to the prefixed form ("megagrad/core/tensor.h"). The user's include path then
# holds only <prefix>/include, so megagrad's top-level names (core/, autograd/, backends/, mega/)
# cannot clash with the user's own; the source tree is left as it is.
# In: MEGAGRAD_HEADER_SOURCE_DIR, MEGAGRAD_HEADERS (paths relative to it), MEGAGRAD_HEADER_DEST.
if(IS_ABSOLUTE "${MEGAGRAD_HEADER_DEST}")
  set(_mg_dest "$ENV{DESTDIR}${MEGAGRAD_HEADER_DEST}")
else()
  set(_mg_dest "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${MEGAGRAD_HEADER_DEST}")
endif()
foreach(_mg_rel IN LISTS MEGAGRAD_HEADERS)
  file(READ "${MEGAGRAD_HEADER_SOURCE_DIR}/${_mg_rel}" _mg_text)
  string(REGEX REPLACE "(#[ \t]*include[ \t]*\")(core|autograd|backends|mega)/" "\\1megagrad/\\2/"
         _mg_text "${_mg_text}")
  set(_mg_out "${_mg_dest}/${_mg_rel}")
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${_mg_out}")
  if(EXISTS "${_mg_out}")
    file(READ "${_mg_out}" _mg_old)
    if(_mg_old STREQUAL _mg_text)
      message(STATUS "Up-to-date: ${_mg_out}")
      continue()
    endif()
  endif()
  message(STATUS "Installing: ${_mg_out}")
  file(WRITE "${_mg_out}" "${_mg_text}")
endforeach()
