// Behaviour of the log of refused calls: one line per refusal naming the API,
// method, peer and status; other statuses ignored; a flood summarised.
#include "src/server/refusal_log.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace fot {
namespace {

struct Fixture {
  std::vector<std::string> lines;
  absl::Time now = absl::FromUnixSeconds(1000);
  RefusalLog log{[this](std::string_view line) { lines.emplace_back(line); },
                 [this] { return now; }};
};

TEST(RefusalLogTest, ALineNamesTheApiMethodPeerAndWhy) {
  Fixture f;
  f.log.Refused("grpc", "DeleteSession", "ipv4:10.0.0.7:41234",
                absl::PermissionDeniedError("DeleteSession needs a read-write key"));
  ASSERT_EQ(f.lines.size(), 1u);
  EXPECT_EQ(f.lines[0],
            "refused grpc DeleteSession from ipv4:10.0.0.7:41234: PERMISSION_DENIED: "
            "DeleteSession needs a read-write key");
}

TEST(RefusalLogTest, OnlyCredentialRefusalsAreLogged) {
  Fixture f;
  f.log.Refused("http", "GET /v1/models", "", absl::UnauthenticatedError("no API key"));
  f.log.Refused("grpc", "Generate", "p", absl::NotFoundError("no session 'x'"));
  f.log.Refused("grpc", "Generate", "p", absl::OkStatus());
  f.log.Refused("grpc", "Generate", "p", absl::InvalidArgumentError("bad"));
  ASSERT_EQ(f.lines.size(), 1u);
  EXPECT_EQ(f.lines[0],
            "refused http GET /v1/models from an unknown peer: UNAUTHENTICATED: "
            "no API key");
}

TEST(RefusalLogTest, AFloodIsCutToTheLimitAndCountedOnceTheWindowEnds) {
  Fixture f;
  const absl::Status refused = absl::UnauthenticatedError("the API key is not valid");
  for (int i = 0; i < 500; ++i) f.log.Refused("grpc", "GetSession", "p", refused);
  EXPECT_EQ(f.lines.size(), static_cast<size_t>(RefusalLog::kLinesPerWindow));
  f.now += RefusalLog::kWindow;
  f.log.Refused("grpc", "GetSession", "p", refused);
  ASSERT_EQ(f.lines.size(), static_cast<size_t>(RefusalLog::kLinesPerWindow + 2));
  EXPECT_EQ(f.lines[RefusalLog::kLinesPerWindow],
            "490 more refused calls were not logged (at most 10 lines per 1s)");
  EXPECT_EQ(f.lines.back(),
            "refused grpc GetSession from p: UNAUTHENTICATED: the API key is not valid");
}

TEST(RefusalLogTest, CallsLeftOutAreCountedWhenTheLogCloses) {
  std::vector<std::string> lines;
  {
    const absl::Time now = absl::FromUnixSeconds(1000);
    RefusalLog log([&](std::string_view line) { lines.emplace_back(line); }, [&] { return now; });
    for (int i = 0; i < RefusalLog::kLinesPerWindow + 1; ++i) {
      log.Refused("grpc", "Score", "p", absl::UnauthenticatedError("no API key"));
    }
  }
  ASSERT_EQ(lines.size(), static_cast<size_t>(RefusalLog::kLinesPerWindow + 1));
  EXPECT_EQ(lines.back(), "1 more refused call was not logged (at most 10 lines per 1s)");
}

}  // namespace
}  // namespace fot
