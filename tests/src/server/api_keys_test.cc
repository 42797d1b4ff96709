// The key file parser and the authorization decision (src/server/api_keys.h):
// every line form, every malformed line refused with its number and without
// the key, bearer metadata, and scope / prefix decisions table by table.
#include "src/server/api_keys.h"

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

// Keys of the allowed length (16+), distinct in their last character only.
const std::string kKeyA = "k3y-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kKeyB = "k3y-aaaaaaaaaaaaaaaaaaaaaaaaaaaab";
const std::string kKeyC = "k3y-aaaaaaaaaaaaaaaaaaaaaaaaaaaac";

std::string Bearer(const std::string& key) { return "Bearer " + key; }

ApiKeys ParseOk(const std::string& text) {
  auto keys = ApiKeys::Parse(text);
  EXPECT_TRUE(keys.ok()) << keys.status();
  return keys.ok() ? *std::move(keys) : *ApiKeys::Parse(kKeyA);
}

Grant GrantOf(const ApiKeys& keys, const std::string& key) {
  auto grant = keys.Authenticate(Bearer(key));
  EXPECT_TRUE(grant.ok()) << grant.status();
  return grant.ok() ? *grant : Grant{};
}

TEST(ApiKeysParse, AKeyAloneIsReadWriteForEveryName) {
  const ApiKeys keys = ParseOk(kKeyA + "\n");
  EXPECT_EQ(keys.size(), 1u);
  const Grant grant = GrantOf(keys, kKeyA);
  EXPECT_EQ(grant.scope, Scope::kReadWrite);
  EXPECT_EQ(grant.prefix, "");
  EXPECT_EQ(grant.line, 1);
}

TEST(ApiKeysParse, ScopesAndPrefixesInAnyOrder) {
  const ApiKeys keys = ParseOk(kKeyA + " read-only\n" +                 //
                               kKeyB + " prefix=alice- read-write\n" +  //
                               kKeyC + " admin");
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(GrantOf(keys, kKeyA).scope, Scope::kReadOnly);
  EXPECT_EQ(GrantOf(keys, kKeyB).scope, Scope::kReadWrite);
  EXPECT_EQ(GrantOf(keys, kKeyB).prefix, "alice-");
  EXPECT_EQ(GrantOf(keys, kKeyB).line, 2);
  EXPECT_EQ(GrantOf(keys, kKeyC).scope, Scope::kAdmin);
  EXPECT_EQ(GrantOf(keys, kKeyC).prefix, "");
}

TEST(ApiKeysParse, CommentsBlankLinesTabsAndCrlfAreIgnored) {
  const ApiKeys keys =
      ParseOk("# fot-server keys\r\n\r\n   \n\t" + kKeyA + "\tread-only   # alice's laptop\r\n#" +
              kKeyB + "\n  # " + kKeyC + "\n");
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_EQ(GrantOf(keys, kKeyA).scope, Scope::kReadOnly);
  EXPECT_EQ(GrantOf(keys, kKeyA).line, 4);
  EXPECT_FALSE(keys.Authenticate(Bearer(kKeyB)).ok());  // commented out
  EXPECT_FALSE(keys.Authenticate(Bearer(kKeyC)).ok());
}

TEST(ApiKeysParse, AHashInsideAKeyBelongsToTheKey) {
  const ApiKeys keys = ParseOk("abc#defghijklmnopqrs read-only\n");
  EXPECT_EQ(GrantOf(keys, "abc#defghijklmnopqrs").scope, Scope::kReadOnly);
}

struct BadFile {
  std::string text;
  std::string line;      // "line N" expected in the message
  std::string expected;  // a part of the message
};

TEST(ApiKeysParse, MalformedLinesAreRefusedByNumberWithoutTheKey) {
  const std::vector<BadFile> cases = {
      {"# only a comment\n\n", "", "no API key"},
      {"", "", "no API key"},
      {"# header\n" + kKeyA + " read-only write\n", "line 2", "read-only, read-write, admin"},
      {kKeyA + " " + kKeyB + "\n", "line 1", "one key per line"},
      {kKeyA + " read-only admin\n", "line 1", "one scope"},
      {kKeyA + " prefix=a prefix=b\n", "line 1", "one prefix"},
      {kKeyA + " admin prefix=alice\n", "line 1", "admin"},
      {kKeyA + " prefix=\n", "line 1", "prefix"},
      {kKeyA + " prefix=a/b\n", "line 1", "prefix"},
      {kKeyA + " prefix=.hidden\n", "line 1", "prefix"},
      {"\n\nshort-key\n", "line 3", "16"},
      {std::string(4097, 'k') + "\n", "line 1", "4096"},
      {"k3y-\x01"
       "aaaaaaaaaaaaaaaaaaaa\n",
       "line 1", "printable ASCII"},
      {"k3y-\xc3\xa9"
       "aaaaaaaaaaaaaaaaaaaa\n",
       "line 1", "printable ASCII"},
      {kKeyA + " read-only\n" + kKeyB + "\n" + kKeyA + " admin\n", "line 3", "line 1"},
  };
  for (const BadFile& c : cases) {
    auto keys = ApiKeys::Parse(c.text);
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(keys.status().message());
    if (!c.line.empty()) {
      EXPECT_EQ(message.rfind(c.line + ":", 0), 0u) << message;
    }
    EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    for (const std::string& key : {kKeyA, kKeyB, std::string("short-key"), std::string("k3y-")}) {
      EXPECT_EQ(message.find(key), std::string::npos) << "the message shows a key: " << message;
    }
  }
}

TEST(ApiKeysLoad, ReadsAFileAndNamesItInErrors) {
  const std::string path = ::testing::TempDir() + "/keys.txt";
  std::ofstream(path) << kKeyA << " read-only\n";
  auto keys = ApiKeys::Load(path);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(GrantOf(*keys, kKeyA).scope, Scope::kReadOnly);

  std::ofstream(path) << "\nshort\n";
  auto bad = ApiKeys::Load(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();

  auto missing = ApiKeys::Load(::testing::TempDir() + "/no-such-keys.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no-such-keys.txt"), std::string::npos);
}

TEST(ApiKeysAuthenticate, OnlyTheExactKeyAsABearerTokenIsAccepted) {
  const ApiKeys keys = ParseOk(kKeyA + " read-only\n" + kKeyB + " admin\n");
  EXPECT_EQ(GrantOf(keys, kKeyB).scope, Scope::kAdmin);
  // The scheme is case-insensitive (RFC 6750); spaces around the token do not count.
  ASSERT_TRUE(keys.Authenticate("bearer " + kKeyA).ok());
  ASSERT_TRUE(keys.Authenticate("BEARER   " + kKeyA + " ").ok());

  for (const std::string& bad :
       {std::string(""), std::string("Bearer"), std::string("Bearer "), kKeyA, "Basic " + kKeyA,
        "Bearer " + kKeyA + "x", "Bearer " + kKeyA.substr(0, kKeyA.size() - 1), "Bearer " + kKeyC,
        "Bearer " + kKeyA + " " + kKeyB, "Bearerx " + kKeyA}) {
    auto grant = keys.Authenticate(bad);
    ASSERT_FALSE(grant.ok()) << bad;
    EXPECT_EQ(grant.status().code(), absl::StatusCode::kUnauthenticated) << bad;
    const std::string message(grant.status().message());
    EXPECT_EQ(message.find(kKeyC), std::string::npos) << message;
    EXPECT_EQ(message.find(kKeyA.substr(4)), std::string::npos) << message;
  }
  // The missing key says how to send one.
  EXPECT_NE(keys.Authenticate("").status().message().find("authorization: Bearer"),
            std::string::npos);
}

TEST(CheckGrant, EachScopeIncludesTheOnesBefore) {
  const std::vector<Scope> scopes = {Scope::kReadOnly, Scope::kReadWrite, Scope::kAdmin};
  for (Scope has : scopes) {
    for (Scope needed : scopes) {
      const absl::Status status = CheckGrant({has, "", 1}, needed, "Ingest", {"notes"});
      if (has >= needed) {
        EXPECT_TRUE(status.ok()) << status;
      } else {
        EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
        const std::string message(status.message());
        EXPECT_NE(message.find("Ingest"), std::string::npos) << message;
        EXPECT_NE(message.find(ScopeName(needed)), std::string::npos) << message;
        EXPECT_NE(message.find(ScopeName(has)), std::string::npos) << message;
      }
    }
  }
}

TEST(CheckGrant, APrefixKeyTouchesOnlyItsNames) {
  const Grant alice{Scope::kReadWrite, "alice-", 2};
  EXPECT_TRUE(alice.Covers("alice-notes"));
  EXPECT_TRUE(alice.Covers("alice-"));
  EXPECT_FALSE(alice.Covers("bob-notes"));
  EXPECT_FALSE(alice.Covers("alice"));
  EXPECT_FALSE(alice.Covers(""));
  EXPECT_TRUE(Grant{}.Covers(""));
  EXPECT_TRUE(Grant{}.Covers("anything"));

  EXPECT_TRUE(CheckGrant(alice, Scope::kReadOnly, "GetSession", {"alice-notes"}).ok());
  EXPECT_TRUE(CheckGrant(alice, Scope::kReadWrite, "ListSessions", {}).ok());
  const absl::Status other = CheckGrant(alice, Scope::kReadOnly, "GetSession", {"bob-notes"});
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(other.message().find("alice-"), std::string::npos) << other;
  EXPECT_NE(other.message().find("bob-notes"), std::string::npos) << other;
  // Every name the call touches: a snapshot outside the prefix is refused too.
  EXPECT_EQ(CheckGrant(alice, Scope::kReadWrite, "SaveSession", {"alice-notes", "bob-v1"}).code(),
            absl::StatusCode::kPermissionDenied);
  // An empty name names nothing (LoadSession's session defaults to its snapshot's name).
  EXPECT_TRUE(CheckGrant(alice, Scope::kReadWrite, "LoadSession", {"alice-v1", ""}).ok());
  EXPECT_EQ(CheckGrant(alice, Scope::kReadWrite, "LoadSession", {"bob-v1", ""}).code(),
            absl::StatusCode::kPermissionDenied);
  // A long name in a message is cut.
  const absl::Status long_name =
      CheckGrant(alice, Scope::kReadOnly, "GetSession", {std::string(5000, 'x')});
  EXPECT_LT(long_name.message().size(), 400u);
}

TEST(ApiKeysAuthorize, UnauthenticatedBeforePermissionDenied) {
  const ApiKeys keys = ParseOk(kKeyA + " read-only prefix=alice-\n" + kKeyB + " admin\n");
  EXPECT_EQ(keys.Authorize("", Scope::kReadOnly, "GetSession", {"bob"}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(
      keys.Authorize(Bearer(kKeyC), Scope::kReadOnly, "GetSession", {"alice-x"}).status().code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(keys.Authorize(Bearer(kKeyA), Scope::kReadWrite, "Ingest", {"alice-x"}).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      keys.Authorize(Bearer(kKeyA), Scope::kReadOnly, "GetSession", {"bob-x"}).status().code(),
      absl::StatusCode::kPermissionDenied);
  auto alice = keys.Authorize(Bearer(kKeyA), Scope::kReadOnly, "GetSession", {"alice-x"});
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->prefix, "alice-");
  auto admin = keys.Authorize(Bearer(kKeyB), Scope::kAdmin, "GetServerInfo", {});
  ASSERT_TRUE(admin.ok()) << admin.status();
  EXPECT_EQ(admin->line, 2);
}

}  // namespace
}  // namespace fot
