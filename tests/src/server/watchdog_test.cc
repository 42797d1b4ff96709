// Watchdog (src/server/watchdog.h): an armed timer fires once, a disarmed one
// never does, and a destroyed timer's action is not run.
#include "src/server/watchdog.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace fot {
namespace {

TEST(WatchdogTest, AnArmedTimerRunsItsActionOnceItExpires) {
  Watchdog watchdog;
  absl::Notification fired;
  Watchdog::Timer timer(&watchdog, [&] { fired.Notify(); });
  EXPECT_FALSE(timer.expired());
  timer.Arm(absl::Milliseconds(20));
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(timer.expired());
}

TEST(WatchdogTest, ADisarmedTimerNeverRuns) {
  Watchdog watchdog;
  std::atomic<int> runs{0};
  absl::Notification later;
  {
    Watchdog::Timer quiet(&watchdog, [&] { ++runs; });
    Watchdog::Timer witness(&watchdog, [&] { later.Notify(); });
    quiet.Arm(absl::Milliseconds(30));
    quiet.Disarm();
    quiet.Arm(absl::ZeroDuration());  // no timeout configured: stays disarmed
    witness.Arm(absl::Milliseconds(60));
    // The witness fires after the quiet timer's deadline has passed.
    ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_FALSE(quiet.expired());
  }
  EXPECT_EQ(runs.load(), 0);
}

TEST(WatchdogTest, RearmingMovesTheDeadline) {
  Watchdog watchdog;
  absl::Notification fired;
  Watchdog::Timer timer(&watchdog, [&] { fired.Notify(); });
  timer.Arm(absl::Hours(1));
  timer.Arm(absl::Milliseconds(10));  // earlier: the watchdog wakes for it
  EXPECT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

}  // namespace
}  // namespace fot
