// What the HTTP port accepts as --http_listen.
#include "src/http/http_server.h"

#include <gtest/gtest.h>

namespace fot::http {
namespace {

TEST(HttpServerTest, ListenAddressDefaultsToLoopback) {
  using Address = std::pair<std::string, int>;
  EXPECT_EQ(*ParseListenAddress("8080"), Address("127.0.0.1", 8080));
  EXPECT_EQ(*ParseListenAddress(":8080"), Address("127.0.0.1", 8080));
  EXPECT_EQ(*ParseListenAddress("0.0.0.0:80"), Address("0.0.0.0", 80));
  EXPECT_EQ(*ParseListenAddress("localhost:0"), Address("localhost", 0));
  EXPECT_EQ(*ParseListenAddress("[::1]:9000"), Address("::1", 9000));
  for (const char* bad : {"", "host:", "host:http", ":70000", "-1", "[::1:80"}) {
    EXPECT_FALSE(ParseListenAddress(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace fot::http
