# Writes OUTPUT, a C++ source that defines fot::http::kInspectorPage as the
# text of INPUT (src/http/inspector.html), so that fot-server serves the page
# without reading files at run time.
#   cmake -DINPUT=... -DOUTPUT=... -P embed_page.cmake
file(READ "${INPUT}" page)
string(FIND "${page}" ")fotpage\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )fotpage\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from src/http/inspector.html by src/http/embed_page.cmake.\n"
  "#include \"src/http/inspector_page.h\"\n\n"
  "namespace fot::http {\n"
  "extern const char kInspectorPage[] = R\"fotpage(${page})fotpage\";\n"
  "}  // namespace fot::http\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
