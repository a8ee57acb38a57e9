// What herald-bench reports besides the rows, with heraldd running (its
// library, embedded in a child process of the coordinator):
//  - repair latency: a producer child holding a claim is killed (SIGKILL);
//    measured from the kill to a consumer reading the event a second
//    producer published right after it (it lies behind the killed claim, so
//    it is readable only once heraldd has repaired that claim), plus
//    heraldd's own figure (death noticed -> claim repaired, from the
//    partition's last_repair_ns / max_repair_ns);
//  - an idle consumer's CPU: a consumer parked (Wait::kPark) for ~1 s on a
//    topic with no events, getrusage of its process over that time.
#pragma once

#include <string>

#include "bench/harness/report.hpp"

namespace herald::bench {

Extras run_extras(bool quick, const std::string& workdir);

}  // namespace herald::bench
