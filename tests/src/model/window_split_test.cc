#include "src/model/window_split.h"

#include "gtest/gtest.h"

namespace fot {
namespace {

TEST(SplitWindowsTest, ShortInputIsOnlyTheLastWindow) {
  EXPECT_EQ(SplitWindows(10, 32, 16), (std::vector<TokenRange>{{0, 10}}));
  EXPECT_EQ(SplitWindows(16, 32, 16), (std::vector<TokenRange>{{0, 16}}));
}

TEST(SplitWindowsTest, HeadIsCutInWindowsFromTheStartAndTheLastOfThemMayBeShorter) {
  // T = 200, W = 32, L = 16: head of 184 = 5 × 32 + 24, then the last 16.
  EXPECT_EQ(SplitWindows(200, 32, 16),
            (std::vector<TokenRange>{
                {0, 32}, {32, 32}, {64, 32}, {96, 32}, {128, 32}, {160, 24}, {184, 16}}));
}

TEST(SplitWindowsTest, HeadOfWholeWindowsHasNoShortWindow) {
  EXPECT_EQ(SplitWindows(80, 32, 16), (std::vector<TokenRange>{{0, 32}, {32, 32}, {64, 16}}));
}

TEST(SplitWindowsTest, EmptyInputGivesAnEmptyLastWindow) {
  EXPECT_EQ(SplitWindows(0, 32, 16), (std::vector<TokenRange>{{0, 0}}));
}

}  // namespace
}  // namespace fot
