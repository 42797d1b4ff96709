#include "src/server/watchdog.h"

#include <utility>

namespace fot {

Watchdog::Watchdog() : thread_([this] { Loop(); }) {}

Watchdog::~Watchdog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void Watchdog::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    absl::Time next = absl::InfiniteFuture();
    const absl::Time now = absl::Now();
    for (auto& [id, entry] : timers_) {
      if (entry.deadline <= now) {
        entry.deadline = absl::InfiniteFuture();
        entry.expired = true;
        entry.action();
      } else {
        next = std::min(next, entry.deadline);
      }
    }
    changed_ = false;
    next_ = next;
    mu_.AwaitWithDeadline(absl::Condition(this, &Watchdog::Woken), next);
  }
}

Watchdog::Timer::Timer(Watchdog* watchdog, std::function<void()> action)
    : watchdog_(watchdog), id_([&] {
        absl::MutexLock lock(&watchdog->mu_);
        const uint64_t id = watchdog->next_id_++;
        watchdog->timers_[id].action = std::move(action);
        return id;
      }()) {}

Watchdog::Timer::~Timer() {
  absl::MutexLock lock(&watchdog_->mu_);  // an action runs under it
  watchdog_->timers_.erase(id_);
}

void Watchdog::Timer::Arm(absl::Duration after) {
  if (after <= absl::ZeroDuration() || after == absl::InfiniteDuration()) return;
  absl::MutexLock lock(&watchdog_->mu_);
  const absl::Time deadline = absl::Now() + after;
  watchdog_->timers_[id_].deadline = deadline;
  if (deadline < watchdog_->next_) watchdog_->changed_ = true;
}

void Watchdog::Timer::Disarm() {
  absl::MutexLock lock(&watchdog_->mu_);
  watchdog_->timers_[id_].deadline = absl::InfiniteFuture();
}

bool Watchdog::Timer::expired() const {
  absl::MutexLock lock(&watchdog_->mu_);
  return watchdog_->timers_.at(id_).expired;
}

}  // namespace fot
