#include "base/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace fot {
namespace {

TEST(Utf8Test, ValidTextPassesAndEachKindOfDamageIsNamedByItsByte) {
  EXPECT_TRUE(ValidateUtf8("café 東京 😀", false).ok());
  EXPECT_NE(ValidateUtf8("caf\xe9", false).message().find("byte 3"), std::string::npos);
  EXPECT_FALSE(ValidateUtf8("\xc0\xaf", false).ok());      // overlong '/'
  EXPECT_FALSE(ValidateUtf8("\xed\xa0\x80", false).ok());  // a surrogate
  EXPECT_FALSE(ValidateUtf8("ends \xe2\x82", false).ok());
  EXPECT_TRUE(ValidateUtf8("ends \xe2\x82", /*allow_incomplete_end=*/true).ok());
}

TEST(Utf8Test, CompleteCharactersPrefixStopsBeforeACutCharacter) {
  const std::string text = "a€b😀";  // 1 + 3 + 1 + 4 bytes
  EXPECT_EQ(CompleteCharactersPrefix(text), text.size());
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const size_t prefix = CompleteCharactersPrefix(text.substr(0, cut));
    EXPECT_LE(prefix, cut);
    EXPECT_TRUE(ValidateUtf8(text.substr(0, prefix), false).ok()) << cut;
    EXPECT_GE(prefix + 3, cut) << cut;  // at most a character's tail is held back
  }
  EXPECT_EQ(CompleteCharactersPrefix(text.substr(0, 2)), 1u);  // inside '€'
  EXPECT_EQ(CompleteCharactersPrefix(text.substr(0, 7)), 5u);  // inside '😀'
}

}  // namespace
}  // namespace fot
