// The cache-line round trip between two threads: how far apart the two
// CPUs are. On a VM it is not a constant: when the host places the two
// vCPUs far apart it grows ~5x, and every cross-process or cross-thread
// number with it, so herald_micro_bench and herald-bench report it before
// and after each run.
#pragma once

namespace herald::bench {

// Median round trip (ns) of one cache line bounced between the calling
// thread (pinned to self_cpu) and a thread it starts and joins (pinned to
// echo_cpu); a cpu < 0 is not pinned. 100 batches of 1000 round trips.
double cache_line_round_trip_ns(int self_cpu, int echo_cpu);

}  // namespace herald::bench
