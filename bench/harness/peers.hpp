// The peers herald-bench compares herald with, one file pair per peer under
// transports/ (<name>.hpp: the transport type per transport.hpp; <name>.cpp:
// its entry, `return make_transport<T>();`). Each peer goes through its own
// real library; none is linked anywhere but herald-bench.
#pragma once

namespace herald::bench {

struct TransportEntry;  // runner.hpp

TransportEntry herald_transport();    // herald itself, per mode (transports/herald.hpp)
TransportEntry ring_transport();      // the baseline SPSC ring (transports/ring.hpp)

TransportEntry iceoryx_transport();   // iceoryx 2 publish/subscribe (Debian's packages); the Host starts RouDi
TransportEntry boost_mq_transport();  // Boost.Interprocess message_queue
TransportEntry zeromq_transport();    // ZeroMQ ipc:// PUSH/PULL
TransportEntry uds_transport();       // Unix domain socket, SOCK_SEQPACKET
TransportEntry pipe_transport();      // a pipe(2)
TransportEntry redis_transport();     // Redis Streams XADD / XREAD; the Host starts redis-server on a Unix socket

}  // namespace herald::bench
