// Server-side timeouts of the calls a client can stall: an Ingest stream that
// stops sending, a reply the client stops reading. Each call holds a Timer,
// arms it before a step that waits on the client and disarms it after; a
// timer that stays armed past its duration runs its action (the service
// cancels the call, which ends the blocked step and releases what the call
// holds).
//
// Thread safety: a Watchdog may be shared by any threads; a Timer belongs to
// one call (one thread). An action runs on the watchdog's thread with the
// watchdog's lock held: it must be short and must not touch the watchdog.
#ifndef FOTSERVE_SRC_SERVER_WATCHDOG_H_
#define FOTSERVE_SRC_SERVER_WATCHDOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fot {

class Watchdog {
 public:
  Watchdog();
  ~Watchdog();  // stops the thread; no Timer may outlive the watchdog
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  class Timer {
   public:
    Timer(Watchdog* watchdog, std::function<void()> action);
    ~Timer();  // disarms; waits for an action that is running
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    // Runs the action once `after` passes, unless disarmed first. A zero or
    // infinite duration leaves the timer disarmed.
    void Arm(absl::Duration after);
    void Disarm();
    // Whether the action has run (the call timed out).
    bool expired() const;

   private:
    Watchdog* const watchdog_;
    const uint64_t id_;
  };

 private:
  struct Entry {
    absl::Time deadline = absl::InfiniteFuture();  // disarmed
    std::function<void()> action;
    bool expired = false;
  };
  void Loop();
  bool Woken() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return changed_ || stopping_; }

  mutable absl::Mutex mu_;
  std::map<uint64_t, Entry> timers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // The thread sleeps until next_ unless changed_: only a deadline before
  // next_ wakes it (arming and disarming per written reply must not).
  absl::Time next_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_WATCHDOG_H_
