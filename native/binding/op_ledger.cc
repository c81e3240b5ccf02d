#include "op_ledger.h"

#include <atomic>
#include <utility>

namespace moekit::binding {

struct Version {
  FailureRef failure;               // set once known; never cleared
  std::vector<VersionRef> sources;  // the versions it was computed from; dropped once final
};

namespace {

// One lock for every version of every device: an op's sources may come from another device (a
// copy between devices), and the work under it is a few pointer moves.
std::mutex& versionMutex() {
  static std::mutex mutex;
  return mutex;
}

// Tickets are unique across devices and increase on each.
std::atomic<uint64_t> lastTicket{0};

// More ops than this waiting to be retired make retireIfLong() enqueue a marker.
constexpr size_t kRetireAfterEntries = 4096;

FailureRef firstFailure(const std::vector<VersionRef>& versions) {
  for (const VersionRef& version : versions) {
    if (version->failure) return version->failure;
  }
  return nullptr;
}

// An op known to have failed only by its mark (FaultRecord::markedTickets).
FailureRef unnamedFailure() {
  static const FailureRef failure = std::make_shared<const Failure>(
      Failure{"E_INVALID_ARGUMENT", "an index check failed in this op; its details were not kept (more than " +
                                        std::to_string(kFaultSlots) + " ops failed between two reads of the device)"});
  return failure;
}

// A version that is not final yet takes its sources' failure.
void inheritFailure(Version& version) {
  if (!version.failure) version.failure = firstFailure(version.sources);
}

// The failure named for a ticket in [first, last], if any.
FailureRef namedFailure(uint64_t first, uint64_t last, const FailureReport& report) {
  for (const OpFailure& failure : report.failures) {
    if (failure.ticket >= first && failure.ticket <= last) return std::make_shared<const Failure>(Failure{failure.code, failure.message});
  }
  return nullptr;
}

bool anyMarked(uint64_t first, uint64_t last, const FailureReport& report) {
  for (uint64_t ticket = first; ticket <= last; ++ticket) {
    if (report.marked(ticket)) return true;
  }
  return false;
}

}  // namespace

FailureRef OpLedger::failureOf(const Entry& entry, const FailureReport& report) {
  if (FailureRef failure = namedFailure(entry.ticket, entry.ticket, report)) return failure;
  // What follows is known only for work before the marker: the captured ops of a replay enqueued
  // after it carry the same tickets as an earlier replay's, and marks may be shared.
  const bool ranBeforeMarker = report.completedThrough == 0 || entry.ticket <= report.completedThrough;
  if (!ranBeforeMarker) return nullptr;
  if (entry.capturedFirst != 0) {
    if (FailureRef failure = namedFailure(entry.capturedFirst, entry.capturedLast, report)) return failure;
    if (anyMarked(entry.capturedFirst, entry.capturedLast, report)) return unnamedFailure();
  }
  return report.marked(entry.ticket) ? unnamedFailure() : nullptr;
}

Lineage::Lineage() : current_(std::make_shared<Version>()) {}

FailureRef Lineage::failure() const {
  std::lock_guard<std::mutex> lock(versionMutex());
  return current_->failure;
}

VersionRef Lineage::current() const {
  std::lock_guard<std::mutex> lock(versionMutex());
  return current_;
}

FailureRef Lineage::failureOf(const VersionRef& version) {
  std::lock_guard<std::mutex> lock(versionMutex());
  return version->failure;
}

void OpLedger::write(const std::vector<VersionRef>& sources, const OpAccess& access, Entry& entry) {
  for (const LineageRef& written : access.writes) {
    auto version = std::make_shared<Version>();
    version->sources = sources;
    if (!access.overwrites) version->sources.push_back(written->current_);
    inheritFailure(*version);
    written->current_ = version;
    entry.outputs.push_back(std::move(version));
  }
}

uint64_t OpLedger::record(const OpAccess& access) {
  std::lock_guard<std::mutex> lock(versionMutex());
  const uint64_t ticket = ++lastTicket;
  issuedThrough_ = ticket;
  if (capturing_) {
    // What the graph reads before writing it comes from outside; what it writes changes at replay.
    for (const LineageRef& read : access.reads) {
      if (captureWritten_.count(read.get()) == 0) capture_.reads.push_back(read);
    }
    for (const LineageRef& written : access.writes) {
      if (captureWritten_.insert(written.get()).second) capture_.writes.push_back(written);
    }
    return ticket;
  }
  std::vector<VersionRef> sources;
  for (const LineageRef& read : access.reads) sources.push_back(read->current_);
  Entry entry;
  entry.ticket = ticket;
  write(sources, access, entry);
  entries_.push_back(std::move(entry));
  return ticket;
}

void OpLedger::recordLaunch(const GraphHistory& graph) {
  std::lock_guard<std::mutex> lock(versionMutex());
  Entry entry;
  entry.ticket = ++lastTicket;
  issuedThrough_ = entry.ticket;
  entry.capturedFirst = graph.firstTicket;
  entry.capturedLast = graph.lastTicket;
  std::vector<VersionRef> sources;
  for (const LineageRef& read : graph.reads) sources.push_back(read->current_);
  // A replay rewrites everything it writes: a captured forward's routing and combine write its outputs whole.
  write(sources, OpAccess{{}, graph.writes, true}, entry);
  entries_.push_back(std::move(entry));
}

void OpLedger::beginCapture() {
  std::lock_guard<std::mutex> lock(versionMutex());
  capturing_ = true;
  capture_ = GraphHistory{};
  capture_.firstTicket = lastTicket + 1;
  captureWritten_.clear();
}

GraphHistory OpLedger::endCapture() {
  std::lock_guard<std::mutex> lock(versionMutex());
  capturing_ = false;
  capture_.lastTicket = lastTicket;
  captureWritten_.clear();
  return std::exchange(capture_, GraphHistory{});
}

uint64_t OpLedger::issuedThrough() {
  std::lock_guard<std::mutex> lock(versionMutex());
  return issuedThrough_;
}

// Every op recorded so far has been enqueued: recording and enqueuing happen together under the
// enqueue lock. A marker enqueued after this call therefore follows all of them.
uint64_t OpLedger::enqueuedThrough() {
  auto lock = enqueueLock();
  return issuedThrough();
}

void OpLedger::whenIdle(Device& device, IdleCallback done) { device.whenIdle(std::move(done), enqueuedThrough()); }

void OpLedger::waitIdle(Device& device) { device.waitIdle(enqueuedThrough()); }

void OpLedger::retireIfLong(Device& device) {
  {
    std::lock_guard<std::mutex> lock(versionMutex());
    if (capturing_ || retiring_ || entries_.size() < kRetireAfterEntries) return;
    retiring_ = true;
  }
  whenIdle(device, [](const std::string&, const std::string&) {});
}

void OpLedger::resolve(const FailureReport& report) {
  std::lock_guard<std::mutex> lock(versionMutex());
  retiring_ = false;
  const uint64_t completedThrough = report.completedThrough;
  if (!report.failures.empty() || !report.markedTickets.empty()) {
    // In ticket order, each op first takes what its sources carry, then its own failure: an op
    // fed a poisoned tensor fails with the poison's error, not with what the poison made it do.
    for (Entry& entry : entries_) {
      for (const VersionRef& output : entry.outputs) inheritFailure(*output);
      const FailureRef failed = failureOf(entry, report);
      if (!failed) continue;
      for (const VersionRef& output : entry.outputs) {
        if (!output->failure) output->failure = failed;
      }
    }
  }
  while (!entries_.empty() && entries_.front().ticket <= completedThrough) {
    for (const VersionRef& output : entries_.front().outputs) output->sources.clear();
    entries_.pop_front();
  }
}

}  // namespace moekit::binding
