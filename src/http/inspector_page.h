// The web memory inspector: src/http/inspector.html, embedded at build time
// (src/http/embed_page.cmake), served by the HTTP port at GET /.
#ifndef FOTSERVE_SRC_HTTP_INSPECTOR_PAGE_H_
#define FOTSERVE_SRC_HTTP_INSPECTOR_PAGE_H_

namespace fot::http {

extern const char kInspectorPage[];  // the page's HTML, NUL-terminated

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_INSPECTOR_PAGE_H_
