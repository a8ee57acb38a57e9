// herald-bench's entry for the ZeroMQ peer (zeromq.hpp).
#include "bench/harness/transports/zeromq.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry zeromq_transport() { return make_transport<ZeromqTransport>(); }

}  // namespace herald::bench
